import { useState } from 'preact/hooks';
import { api } from '../api.js';
import { useT } from '../i18n.js';
import { isOperator, useData } from '../data.js';

// The operator's actions, as routed by the API (docs/openapi.json).
const actions = {
  add: (prefix, ttl, reason) => api('orders', { method: 'POST', body: { prefix, ttl, reason } }),
  remove: (id) => api(`orders/${encodeURIComponent(id)}`, { method: 'DELETE' }),
  approve: (id) => api(`orders/${encodeURIComponent(id)}/approve`, { method: 'POST' }),
  reject: (id) => api(`orders/${encodeURIComponent(id)}/reject`, { method: 'POST' }),
};

// Approval is per delivery: an active order whose deliveries wait in
// state "proposed" (confirm mode) can be approved or rejected.
const deliveries = (o) => Object.entries(o.deliveries || {});
const isProposed = (o) => o.state === 'active' && deliveries(o).some(([, d]) => d.state === 'proposed');

function OrderControls({ order, onResult }) {
  const t = useT();
  const run = (fn, done) => async () => {
    try {
      const o = await fn(order.id);
      onResult(done(o), false);
    } catch (e) {
      onResult(`${t('common.error')} ${e.status || ''}: ${e.message}`, true);
    }
  };
  const decided = (o) => t('blocks.decided', { id: order.id, state: t.state(o ? o.state : '') });
  return (
    <span class="controls">
      {isProposed(order) && (
        <>
          <button class="approve" onClick={run(actions.approve, decided)}>{t('blocks.approve')}</button>
          <button class="reject" onClick={run(actions.reject, decided)}>{t('blocks.reject')}</button>
        </>
      )}
      {order.state === 'active' && (
        <button class="remove" onClick={run(actions.remove, () => t('blocks.removed', { id: order.id }))}>
          {t('blocks.remove')}
        </button>
      )}
    </span>
  );
}

export function OrdersTable({ orders, id, onResult }) {
  const t = useT();
  const { me } = useData();
  const controls = isOperator(me) && onResult;
  if (!orders.length) return <p class="muted">{t('blocks.empty')}</p>;
  return (
    <table id={id}>
      <thead>
        <tr>
          <th>{t('blocks.id')}</th><th>{t('blocks.state')}</th><th>{t('blocks.action')}</th>
          <th>{t('blocks.source')}</th><th>{t('blocks.destination')}</th><th>{t('blocks.targets')}</th>
          <th>{t('blocks.reason')}</th><th>{t('blocks.created_by')}</th><th>{t('blocks.expires')}</th>
          <th>{t('blocks.incident')}</th>{controls && <th />}
        </tr>
      </thead>
      <tbody>
        {orders.map((o) => (
          <tr data-order={o.id} data-source={o.source}>
            <td>{o.id}</td>
            <td><span class={`badge ${o.state}`}>{t.state(o.state)}</span></td>
            <td>{o.action}</td>
            <td>{o.source || '–'}</td>
            <td>{o.destination || '–'}</td>
            <td class="deliveries">
              {o.city_wide && <span>{t('incident.city_wide')}: </span>}
              {deliveries(o).map(([sensor, d]) => (
                <span data-sensor={sensor}>{sensor} <span class={`badge ${d.state}`}>{t.state(d.state)}</span> </span>
              ))}
            </td>
            <td>{o.reason}</td>
            <td>{o.created_by}</td>
            <td>{t.time(o.expires_at_ns)}</td>
            <td>{o.incident_id ? <a href={`#/incidents/${encodeURIComponent(o.incident_id)}`}>{o.incident_id}</a> : '–'}</td>
            {controls && <td><OrderControls order={o} onResult={onResult} /></td>}
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function AddBlock({ onResult }) {
  const t = useT();
  const [prefix, setPrefix] = useState('');
  const [ttl, setTtl] = useState('1h');
  const [reason, setReason] = useState('');
  const submit = async (e) => {
    e.preventDefault();
    try {
      const o = await actions.add(prefix.trim(), ttl.trim(), reason.trim());
      onResult(t('blocks.added', { id: o.id }), false);
      setPrefix('');
      setReason('');
    } catch (err) {
      onResult(`${t('common.error')} ${err.status || ''}: ${err.message}`, true);
    }
  };
  return (
    <form id="add-block" class="row" onSubmit={submit}>
      <label>{t('blocks.prefix')}<input name="prefix" value={prefix} placeholder="203.0.113.0/24" required onInput={(e) => setPrefix(e.currentTarget.value)} /></label>
      <label>{t('blocks.ttl')}<input name="ttl" value={ttl} size="6" required onInput={(e) => setTtl(e.currentTarget.value)} /></label>
      <label class="grow">{t('blocks.reason')}<input name="reason" value={reason} required onInput={(e) => setReason(e.currentTarget.value)} /></label>
      <button type="submit">{t('blocks.submit')}</button>
    </form>
  );
}

export function BlocksView() {
  const t = useT();
  const { orders, me, refresh } = useData();
  const [note, setNote] = useState(null);
  const onResult = (text, error) => {
    setNote({ text, error });
    refresh();
  };
  if (!orders) return <p>{t('common.loading')}</p>;
  return (
    <section>
      <h2>{t('blocks.title')}</h2>
      {isOperator(me) ? (
        <>
          <h3>{t('blocks.add')}</h3>
          <AddBlock onResult={onResult} />
        </>
      ) : (
        <p class="muted" id="viewer-note">{t('blocks.viewer_note')}</p>
      )}
      {note && <p id="block-note" class={note.error ? 'error' : 'ok'} role="status">{note.text}</p>}
      <OrdersTable orders={orders} id="orders" onResult={onResult} />
    </section>
  );
}
