import { render } from 'preact';
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, session, setUnauthorizedHandler, subscribe } from './api.js';
import { I18n, LANGUAGES, storeLanguage, storedLanguage, translator, useT } from './i18n.js';
import { Data } from './data.js';
import { CityView } from './views/city.jsx';
import { IncidentList, IncidentDetail } from './views/incidents.jsx';
import { BlocksView } from './views/blocks.jsx';
import { AuditView } from './views/audit.jsx';
import './style.css';

function useHashRoute() {
  const [hash, setHash] = useState(location.hash || '#/city');
  useEffect(() => {
    const on = () => setHash(location.hash || '#/city');
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return hash.slice(2).split('/').map(decodeURIComponent);
}

function Login({ onDone }) {
  const t = useT();
  const [token, setToken] = useState('');
  const [error, setError] = useState('');
  const submit = async (e) => {
    e.preventDefault();
    setError('');
    try {
      const me = await api('whoami', { token: token.trim() });
      session.set(token.trim());
      onDone(me);
    } catch (err) {
      setError(`${t('login.bad')}: ${err.message}`);
    }
  };
  return (
    <form class="login" onSubmit={submit}>
      <h1>{t('login.title')}</h1>
      <label>
        {t('login.token')}
        <input id="token" type="password" autocomplete="off" value={token}
          onInput={(e) => setToken(e.currentTarget.value)} required />
      </label>
      <button id="login" type="submit">{t('login.submit')}</button>
      {error && <p class="error" role="alert">{error}</p>}
      <p class="hint">{t('login.hint')}</p>
    </form>
  );
}

function LanguageChoice({ lang, setLang }) {
  const t = useT();
  return (
    <label class="lang">
      {t('nav.language')}{' '}
      <select id="language" value={lang} onChange={(e) => setLang(e.currentTarget.value)}>
        {LANGUAGES.map((l) => <option value={l.code}>{l.name}</option>)}
      </select>
    </label>
  );
}

// The shared, live state. The event stream's "status" event (every second)
// carries the sensors; any other event (incident_opened, incident_updated,
// order, ...) refetches incidents and orders, coalesced over 300 ms. While
// the stream is down everything is polled every 5 s.
function useLiveData(me) {
  const [state, setState] = useState({ status: null, incidents: null, orders: null, error: '' });
  const [live, setLive] = useState('offline');
  const [tick, setTick] = useState(0);
  const [statusTick, setStatusTick] = useState(0);
  const pending = useRef(null);
  const refresh = useCallback(async () => {
    try {
      const [status, incidents, orders] = await Promise.all([
        api('status'), api('incidents'), api('orders'),
      ]);
      setState({ status: status.sensors, incidents: incidents.incidents, orders: orders.orders, error: '' });
      setTick((n) => n + 1);
      setStatusTick((n) => n + 1);
    } catch (e) {
      setState((s) => ({ ...s, error: e.message }));
    }
  }, []);
  const soon = useCallback(() => {
    if (pending.current) return;
    pending.current = setTimeout(() => {
      pending.current = null;
      refresh();
    }, 300);
  }, [refresh]);
  const onEvent = useCallback((ev) => {
    if (ev.type !== 'status') return soon();
    try {
      const { sensors } = JSON.parse(ev.data);
      if (Array.isArray(sensors)) {
        setState((s) => ({ ...s, status: sensors }));
        setStatusTick((n) => n + 1);
      }
    } catch {
      soon();
    }
    return undefined;
  }, [soon]);
  useEffect(() => {
    if (!me) return undefined;
    refresh();
    const stop = subscribe(onEvent, setLive);
    return () => {
      stop();
      clearTimeout(pending.current);
      pending.current = null;
    };
  }, [me, refresh, onEvent]);
  useEffect(() => {
    if (!me || live === 'live') return undefined;
    const timer = setInterval(refresh, 5000);
    return () => clearInterval(timer);
  }, [me, live, refresh]);
  return { ...state, live, tick, statusTick, refresh, me };
}

function App() {
  const [lang, setLangState] = useState(storedLanguage());
  const t = useMemo(() => translator(lang), [lang]);
  const setLang = (l) => {
    storeLanguage(l);
    setLangState(l);
  };
  useEffect(() => storeLanguage(lang), []);
  const [me, setMe] = useState(null);
  const [checking, setChecking] = useState(!!session.token());
  useEffect(() => {
    setUnauthorizedHandler(() => {
      session.clear();
      setMe(null);
    });
    if (session.token())
      api('whoami')
        .then(setMe)
        .catch(() => session.clear())
        .finally(() => setChecking(false));
  }, []);
  const data = useLiveData(me);
  const route = useHashRoute();

  let body;
  if (checking) body = <p>{t('common.loading')}</p>;
  else if (!me) body = <Login onDone={setMe} />;
  else if (route[0] === 'incidents' && route[1]) body = <IncidentDetail id={route[1]} />;
  else if (route[0] === 'incidents') body = <IncidentList />;
  else if (route[0] === 'blocks') body = <BlocksView />;
  else if (route[0] === 'audit') body = <AuditView />;
  else body = <CityView />;

  const nav = [
    ['city', t('nav.city')],
    ['incidents', t('nav.incidents')],
    ['blocks', t('nav.blocks')],
    ['audit', t('nav.audit')],
  ];
  return (
    <I18n.Provider value={t}>
      <Data.Provider value={data}>
        <header>
          <div class="brand">
            <strong>{t('app.title')}</strong> <span>{t('app.subtitle')}</span>
          </div>
          {me && (
            <nav>
              {nav.map(([r, label]) => (
                <a id={`nav-${r}`} href={`#/${r}`} class={route[0] === r ? 'current' : ''}>{label}</a>
              ))}
            </nav>
          )}
          <div class="session">
            {me && (
              <span id="live" class={`live ${data.live}`}>{t(`live.${data.live}`)}</span>
            )}
            {me && (
              <span id="who">{me.name} ({t(`role.${me.role}`)})</span>
            )}
            <LanguageChoice lang={lang} setLang={setLang} />
            {me && (
              <button id="logout" onClick={() => { session.clear(); setMe(null); }}>
                {t('nav.logout')}
              </button>
            )}
          </div>
        </header>
        <main>
          {data.error && me && <p class="error" role="alert">{t('common.error')}: {data.error}</p>}
          {body}
        </main>
      </Data.Provider>
    </I18n.Provider>
  );
}

render(<App />, document.getElementById('app'));
