import { useEffect, useState } from 'preact/hooks';
import { api, download } from '../api.js';
import { AreaChart } from '../charts.jsx';
import { useT } from '../i18n.js';
import { isOpenIncident, rowPps, useData } from '../data.js';
import { OrdersTable } from './blocks.jsx';

const CHART_POINTS = 60;
const CHART_MARGIN_NS = 30e9;

const list = (xs) => (xs && xs.length ? xs.join(', ') : '–');

function opdsOf(ids, status) {
  return (ids || []).map((id) => {
    const s = (status || []).find((x) => x.id === id);
    return s && s.opd ? `${s.opd} (${id})` : id;
  });
}

export function IncidentList() {
  const t = useT();
  const { incidents, status } = useData();
  const [onlyOpen, setOnlyOpen] = useState(false);
  if (!incidents) return <p>{t('common.loading')}</p>;
  const shown = onlyOpen ? incidents.filter(isOpenIncident) : incidents;
  return (
    <section>
      <h2>{t('incidents.title')}</h2>
      <label class="inline">
        <input type="checkbox" checked={onlyOpen} onChange={(e) => setOnlyOpen(e.currentTarget.checked)} />
        {t('incidents.only_open')}
      </label>
      {shown.length === 0 ? (
        <p id="no-incidents">{t('incidents.empty')}</p>
      ) : (
        <table id="incidents">
          <thead>
            <tr>
              <th>{t('incidents.id')}</th><th>{t('incidents.state')}</th>
              <th>{t('incidents.severity')}</th><th>{t('incidents.classification')}</th>
              <th>{t('incidents.victims')}</th><th>{t('incidents.opds')}</th>
              <th>{t('incidents.opened')}</th><th class="n">{t('incidents.peak_pps')}</th>
            </tr>
          </thead>
          <tbody>
            {shown.map((i) => (
              <tr data-incident={i.id}>
                <td><a href={`#/incidents/${encodeURIComponent(i.id)}`}>{i.id}</a></td>
                <td><span class={`badge ${i.state}`}>{t.state(i.state)}</span></td>
                <td>{i.severity}</td>
                <td>{i.classification}</td>
                <td>{list(i.victims)}</td>
                <td>{list(opdsOf(i.sensors, status))}</td>
                <td>{t.time(i.opened_at_ns)}</td>
                <td class="n">{t.num(i.peak_pps)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

// Packets per second at the incident's first victim, from its opening to
// its end (or now), downsampled by the API to CHART_POINTS.
function PpsChart({ incident }) {
  const t = useT();
  const { status } = useData();
  const sensor = (status || []).find((s) => s.id === (incident.sensors || [])[0]);
  const windowMs = (sensor && sensor.window_ms) || 1000;
  const [points, setPoints] = useState(null);
  const victim = (incident.victims || [])[0];
  const end = incident.resolved_at_ns || incident.updated_at_ns;
  useEffect(() => {
    if (!victim) return;
    const since = incident.opened_at_ns - CHART_MARGIN_NS;
    const until = end + CHART_MARGIN_NS;
    // City-wide history of the victim, over the incident when the API takes
    // the range, else over the victim's whole stored history.
    const q = `history?victim=${encodeURIComponent(victim)}&points=${CHART_POINTS}`;
    api(`${q}&since=${since}&until=${until}`)
      .catch(() => api(q))
      .then((h) =>
        setPoints((h.windows || []).map((w) => ({
          t: w.start_ns,
          v: rowPps(w, windowMs),
        }))))
      .catch(() => setPoints([]));
  }, [incident.id, end]);
  if (points === null) return <p>{t('common.loading')}</p>;
  if (points.length < 2) return <p class="muted">{t('incident.chart_empty')}</p>;
  return (
    <AreaChart points={points} label={t('incident.chart')} fmtValue={t.num}
      fmtTime={(ns) => new Date(ns / 1e6).toLocaleTimeString(t.lang === 'id' ? 'id-ID' : 'en-GB', { hour12: false })} />
  );
}

function Evidence({ id }) {
  const t = useT();
  const [message, setMessage] = useState('');
  const get = async (path, file) => {
    setMessage('');
    try {
      await download(path, file);
    } catch (e) {
      setMessage(e.status === 404 || e.status === 501 ? `${t('common.unavailable')} (${e.message})` : `${t('common.error')}: ${e.message}`);
    }
  };
  const enc = encodeURIComponent(id);
  return (
    <div class="buttons">
      <button id="download-pcap" onClick={() => get(`incidents/${enc}/pcap`, `${id}.pcap`)}>{t('incident.pcap')}</button>
      <button id="export-stix" onClick={() => get(`incidents/${enc}/export?format=stix`, `${id}.stix.json`)}>{t('incident.export_stix')}</button>
      <button id="export-misp" onClick={() => get(`incidents/${enc}/export?format=misp`, `${id}.misp.json`)}>{t('incident.export_misp')}</button>
      {message && <p class="error" id="evidence-message" role="alert">{message}</p>}
    </div>
  );
}

export function IncidentDetail({ id }) {
  const t = useT();
  const { tick, status, orders } = useData();
  const [inc, setInc] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    api(`incidents/${encodeURIComponent(id)}`)
      .then((j) => { setInc(j); setError(''); })
      .catch((e) => setError(e.status === 404 ? t('incident.not_found') : e.message));
  }, [id, tick]);
  if (error) return <p class="error">{error}</p>;
  if (!inc) return <p>{t('common.loading')}</p>;
  const facts = [
    [t('incidents.state'), <span class={`badge ${inc.state}`}>{t.state(inc.state)}</span>],
    [t('incidents.severity'), inc.severity],
    [t('incidents.classification'), inc.classification],
    [t('incidents.vectors'), list(inc.vectors)],
    [t('incidents.victims'), list(inc.victims)],
    [t('incidents.opds'), list(opdsOf(inc.sensors, status))],
    [t('incidents.opened'), t.time(inc.opened_at_ns)],
    [t('incident.updated'), t.time(inc.updated_at_ns)],
    [t('incident.resolved'), t.time(inc.resolved_at_ns)],
    [t('incidents.peak_pps'), t.num(inc.peak_pps)],
    [t('incident.peak_bps'), t.num(inc.peak_bps)],
    [t('incident.distinct_sources'), t.num(inc.distinct_sources)],
    [t('incident.spoofed_sources'), t.num(inc.spoofed_sources)],
    [t('incident.city_wide'), inc.city_wide ? t('audit.yes') : t('audit.no')],
  ];
  const mine = (orders || []).filter((o) => o.incident_id === inc.id);
  return (
    <section id="incident" data-incident={inc.id}>
      <p><a href="#/incidents">← {t('common.back')}</a></p>
      <h2>{t('incident.title', { id: inc.id })}</h2>
      <div class="grid">
        <div>
          <h3>{t('incident.facts')}</h3>
          <dl class="facts">{facts.map(([k, v]) => [<dt>{k}</dt>, <dd>{v}</dd>])}</dl>
        </div>
        <div>
          <h3>{t('incident.chart')}</h3>
          <PpsChart incident={inc} />
          <h3>{t('incident.evidence')}</h3>
          <Evidence id={inc.id} />
        </div>
      </div>
      <h3>{t('incident.members')}</h3>
      <table id="members">
        <thead><tr><th>{t('city.sensor')}</th><th>{t('incidents.victims')}</th><th>{t('incidents.vectors')}</th><th class="n">{t('incidents.peak_pps')}</th><th>{t('incidents.opened')}</th></tr></thead>
        <tbody>
          {(inc.members || []).map((m) => (
            <tr><td>{m.sensor}</td><td>{m.victim}</td><td>{m.vector}</td><td class="n">{t.num(m.peak_pps)}</td><td>{t.time(m.first_ns)}</td></tr>
          ))}
        </tbody>
      </table>
      <div class="grid">
        <div>
          <h3>{t('incident.top_sources')}</h3>
          <table id="top-sources">
            <thead><tr><th>{t('incident.address')}</th><th class="n">{t('incident.packets')}</th><th class="n">{t('incident.share')}</th><th class="n">{t('incident.sightings')}</th></tr></thead>
            <tbody>
              {(inc.top_sources || []).length === 0 && <tr><td colspan="4" class="muted">{t('common.none')}</td></tr>}
              {(inc.top_sources || []).map((s) => (
                <tr><td>{s.address}</td><td class="n">{t.num(s.packets)}</td><td class="n">{t.num(s.share * 100)}%</td><td class="n">{s.sightings}</td></tr>
              ))}
            </tbody>
          </table>
          {(inc.source_prefixes || []).length > 0 && (
            <p>{t('incident.source_prefixes')}: {inc.source_prefixes.map((p) => p.prefix).join(', ')}</p>
          )}
        </div>
        <div>
          <h3>{t('incident.timeline')}</h3>
          <ol id="timeline" class="timeline">
            {(inc.timeline || []).map((e) => (
              <li><time>{t.time(e.at_ns)}</time> <b>{e.kind}</b> {e.text}</li>
            ))}
          </ol>
        </div>
      </div>
      <h3>{t('incident.orders')}</h3>
      <OrdersTable orders={mine} id="incident-orders" />
    </section>
  );
}
