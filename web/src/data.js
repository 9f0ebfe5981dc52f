import { createContext } from 'preact';
import { useContext } from 'preact/hooks';

// The live city state shared by every view: status.sensors,
// incidents.incidents and orders.orders as the API returns them, plus
// `me` (the token's name and role), `tick` (bumped when incidents and orders
// were refetched) and `statusTick` (bumped on every new status).
export const Data = createContext(null);
export const useData = () => useContext(Data);

export const isOperator = (me) => me && me.role === 'operator';
export const isOpenIncident = (i) => i.state !== 'resolved';
export const isActiveOrder = (o) => o.state === 'active';

// Packets per second of a history row. A downsampled row (`windows` set)
// sums the packets of its windows over a bucket `window_ms` wide, which may
// be narrower than the windows themselves: the time it covers is the larger
// of the two. `srcWindowMs` is the sensors' own window length.
export function rowPps(row, srcWindowMs = 1000) {
  const ms = Math.max(row.window_ms || srcWindowMs, (row.windows || 1) * srcWindowMs);
  return row.packets / (ms / 1000);
}

// An order applies to a sensor when it names it or is city-wide.
export const orderTargets = (o, sensorId) =>
  o.city_wide || (o.targets || []).includes(sensorId);
