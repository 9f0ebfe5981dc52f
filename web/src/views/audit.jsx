import { useEffect, useState } from 'preact/hooks';
import { api } from '../api.js';
import { useT } from '../i18n.js';
import { useData } from '../data.js';

const AUDIT_LIMIT = 500;
const KNOWN = new Set(['at_ns', 'who', 'role', 'action', 'allowed']);

// The audit log, newest first; fields beyond the common ones are shown as
// compact JSON so that no recorded detail is hidden.
export function AuditView() {
  const t = useT();
  const { tick } = useData();
  const [entries, setEntries] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    api(`audit?limit=${AUDIT_LIMIT}`)
      .then((j) => { setEntries(j.records || []); setError(''); })
      .catch((e) => setError(e.message));
  }, [tick]);
  if (error) return <p class="error">{error}</p>;
  if (!entries) return <p>{t('common.loading')}</p>;
  const rows = [...entries].sort((a, b) => (b.at_ns || 0) - (a.at_ns || 0));
  return (
    <section>
      <h2>{t('audit.title')}</h2>
      {rows.length === 0 ? <p class="muted">{t('audit.empty')}</p> : (
        <table id="audit">
          <thead>
            <tr><th>{t('audit.at')}</th><th>{t('audit.who')}</th><th>{t('audit.role')}</th><th>{t('audit.action')}</th><th>{t('audit.allowed')}</th><th>{t('audit.detail')}</th></tr>
          </thead>
          <tbody>
            {rows.map((e) => {
              const rest = Object.entries(e).filter(([k]) => !KNOWN.has(k));
              return (
                <tr>
                  <td>{t.time(e.at_ns)}</td>
                  <td>{e.who}</td>
                  <td>{e.role ? t(`role.${e.role}`) : '–'}</td>
                  <td>{e.action}</td>
                  <td>{e.allowed === undefined ? '–' : e.allowed ? t('audit.yes') : t('audit.no')}</td>
                  <td class="detail">
                    {rest.map(([k, v]) => (
                      <div><span class="muted">{k}</span> {k.endsWith('_ns') ? t.time(v) : typeof v === 'string' ? v : JSON.stringify(v)}</div>
                    ))}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
