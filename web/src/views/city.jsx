import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from '../api.js';
import { Sparkline } from '../charts.jsx';
import { useT } from '../i18n.js';
import { isActiveOrder, isOpenIncident, orderTargets, rowPps, useData } from '../data.js';

const SPARK_POINTS = 30;
const SPARK_REFRESH_MS = 5000;

// Packets per second of each of a sensor's last windows, from /history
// downsampled to SPARK_POINTS; refreshed at most every SPARK_REFRESH_MS.
function useSparks(sensors, tick) {
  const [sparks, setSparks] = useState({});
  const last = useRef(0);
  useEffect(() => {
    if (!sensors || Date.now() - last.current < SPARK_REFRESH_MS) return;
    last.current = Date.now();
    Promise.all(
      sensors.map((s) =>
        api(`history?sensor=${encodeURIComponent(s.id)}&points=${SPARK_POINTS}`)
          .then((h) => [s.id, (h.windows || []).map((w) => rowPps(w, s.window_ms))])
          .catch(() => [s.id, null]),
      ),
    ).then((rows) => setSparks(Object.fromEntries(rows.filter(([, v]) => v))));
  }, [tick]);
  return sparks;
}

function Tile({ id, label, value }) {
  return (
    <div class="tile" id={id}>
      <div class="value">{value}</div>
      <div class="label">{label}</div>
    </div>
  );
}

export function CityView() {
  const t = useT();
  const { status, incidents, orders, statusTick } = useData();
  const sparks = useSparks(status, statusTick);
  if (!status) return <p>{t('common.loading')}</p>;
  const open = (incidents || []).filter(isOpenIncident);
  const active = (orders || []).filter(isActiveOrder);
  const up = status.filter((s) => s.state !== 'down').length;
  const cityPps = status.reduce((n, s) => n + (s.pps || 0), 0);
  return (
    <section>
      <h2>{t('city.title')}</h2>
      <div class="tiles">
        <Tile id="tile-up" label={t('city.sensors_up')} value={`${up} / ${status.length}`} />
        <Tile id="tile-incidents" label={t('city.open_incidents')} value={open.length} />
        <Tile id="tile-orders" label={t('city.active_orders')} value={active.length} />
        <Tile id="tile-pps" label={t('city.city_pps')} value={t.num(cityPps)} />
      </div>
      <table id="sensors">
        <thead>
          <tr>
            <th>{t('city.sensor')}</th><th>{t('city.opd')}</th><th>{t('city.state')}</th>
            <th class="n">{t('city.pps')}</th><th>{t('city.trend')}</th>
            <th class="n">{t('city.kernel_drops')}</th><th class="n">{t('city.orders')}</th>
            <th class="n">{t('city.incidents')}</th><th>{t('city.last_seen')}</th>
          </tr>
        </thead>
        <tbody>
          {status.map((s) => (
            <tr data-sensor={s.id}>
              <td>{s.id}</td>
              <td>{s.opd}</td>
              <td><span class={`badge ${s.state}`}>{t.state(s.state)}</span></td>
              <td class="n">{t.num(s.pps)}</td>
              <td><Sparkline values={sparks[s.id]} /></td>
              <td class="n">{t.num(s.kernel_drops)}</td>
              <td class="n">{active.filter((o) => orderTargets(o, s.id)).length}</td>
              <td class="n">{open.filter((i) => (i.sensors || []).includes(s.id)).length}</td>
              <td>{t.time(s.last_seen_ns)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
