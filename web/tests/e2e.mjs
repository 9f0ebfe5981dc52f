// The web console in a real browser (Debian's chromium driven by
// playwright-core) against a real aggregator. Started by
// tests/integration/test_web.py, which owns the aggregator and the sensor:
// this script prints "E2E-READY-FOR-ATTACK" once the operator is signed in
// and watching the incident list, and the wrapper then starts the sensor.
//
// Environment:
//   GARDA_URL              the aggregator's HTTP base, e.g. http://127.0.0.1:7480/
//   GARDA_OPERATOR_TOKEN   a token with role operator
//   GARDA_VIEWER_TOKEN     a token with role viewer
//   GARDA_VICTIM           the victim address the attack must show
//   GARDA_ARTIFACTS        folder for screenshots and the downloaded pcap
//   GARDA_CHROMIUM         browser binary (default /usr/bin/chromium)
//   GARDA_E2E_TIMEOUT_MS   bound on each wait (default 90000)
// Exits 0 when every check passed; prints one "ok"/"FAIL" line per check and
// a JSON line "E2E-RESULT {...}" for the wrapper.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    console.error(`e2e: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
const BASE = env('GARDA_URL');
const OPERATOR = env('GARDA_OPERATOR_TOKEN');
const VIEWER = env('GARDA_VIEWER_TOKEN');
const VICTIM = env('GARDA_VICTIM');
const ARTIFACTS = env('GARDA_ARTIFACTS');
const CHROMIUM = env('GARDA_CHROMIUM', '/usr/bin/chromium');
const TIMEOUT = Number(env('GARDA_E2E_TIMEOUT_MS', '90000'));
const BLOCK = '198.18.201.0/24';

mkdirSync(ARTIFACTS, { recursive: true });
const result = { screenshots: [], pcap: null, pcap_status: null };
let failed = 0;

function check(cond, what) {
  if (cond) console.log(`ok   ${what}`);
  else {
    failed++;
    console.log(`FAIL ${what}`);
  }
  return cond;
}

async function shot(page, name) {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push(path);
}

async function signIn(page, token) {
  await page.goto(BASE);
  await page.locator('#token').fill(token);
  await page.locator('#login').click();
  await page.locator('#who').waitFor();
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
    '--disable-component-update', '--no-first-run'],
});
try {
  const api = (await browser.newContext()).request;
  const auth = (token) => ({ Authorization: `Bearer ${token}` });

  // --- The operator signs in: Indonesian by default. ---
  const opContext = await browser.newContext({ acceptDownloads: true, viewport: { width: 1400, height: 900 } });
  const page = await opContext.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => m.type() === 'error' && console.log(`browser: ${m.text()}`));
  let loads = 0;
  page.on('load', () => loads++);
  await page.goto(BASE);
  check((await page.locator('h1').textContent()) === 'Masuk ke Garda SOC', 'sign-in page is in Indonesian by default');
  await shot(page, '01-login');
  await page.locator('#token').fill('not-a-token');
  await page.locator('#login').click();
  await page.locator('.login .error').waitFor();
  check(true, 'a wrong token is refused on the sign-in page');
  await page.locator('#token').fill(OPERATOR);
  await page.locator('#login').click();
  await page.locator('#sensors tbody tr').first().waitFor();
  check((await page.locator('#who').textContent()).includes('operator'), 'operator signed in, role shown');
  await page.locator('#live.live').waitFor();
  check(true, 'event stream connected');
  await shot(page, '02-city-before-attack');

  // --- Watch the incident list; the wrapper starts the attack now. ---
  await page.locator('#nav-incidents').click();
  await page.locator('#no-incidents').waitFor();
  const loadsBefore = loads;
  console.log('E2E-READY-FOR-ATTACK');
  const row = page.locator('#incidents tr[data-incident]').first();
  await row.waitFor({ timeout: TIMEOUT });
  check(loads === loadsBefore, 'the incident appeared live, without a page reload');
  check((await row.textContent()).includes(VICTIM), `the incident names victim ${VICTIM}`);
  await shot(page, '03-incident-live');
  const incidentId = await row.getAttribute('data-incident');
  result.incident = incidentId;

  // City view reflects it too.
  await page.locator('#nav-city').click();
  await page.locator('#tile-incidents .value').waitFor();
  await shot(page, '04-city-under-attack');

  // --- Open it. ---
  await page.locator('#nav-incidents').click();
  await page.locator(`#incidents tr[data-incident="${incidentId}"] a`).click();
  await page.locator('#incident').waitFor();
  check((await page.locator('#incident .facts').textContent()).includes(VICTIM), 'detail shows the victim');
  check((await page.locator('#timeline li').count()) > 0, 'detail shows a timeline');
  const incJson = await (await api.get(new URL(`api/v1/incidents/${encodeURIComponent(incidentId)}`, BASE).href,
    { headers: auth(OPERATOR) })).json();
  const sourceRows = await page.locator('#top-sources tbody tr td:first-child').allTextContents();
  check(incJson.top_sources.every((s) => sourceRows.includes(s.address)),
    `detail lists the incident's ${incJson.top_sources.length} top sources`);
  check(await page.locator('#members tbody tr').count() === incJson.members.length,
    `detail lists its ${incJson.members.length} victim(s) per sensor`);
  await page.locator('#incident svg.chart, #incident .muted').first().waitFor();
  result.chart = await page.locator('#incident svg.chart').count() > 0;
  await shot(page, '05-incident-detail');

  // --- Evidence pcap: the download works whenever the route does. ---
  const pcapPath = `api/v1/incidents/${encodeURIComponent(incidentId)}/pcap`;
  // The aggregator asks the victim's sensor for packets when the incident
  // opens; until they arrive it answers 404 "try again in a few seconds".
  let direct = await api.get(new URL(pcapPath, BASE).href, { headers: auth(OPERATOR) });
  for (let i = 0; i < 30 && direct.status() === 404; i++) {
    await page.waitForTimeout(500);
    direct = await api.get(new URL(pcapPath, BASE).href, { headers: auth(OPERATOR) });
  }
  result.pcap_status = direct.status();
  if (direct.status() === 200) {
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.locator('#download-pcap').click(),
    ]);
    result.pcap = join(ARTIFACTS, 'incident.pcap');
    await download.saveAs(result.pcap);
    check(true, `pcap downloaded through the page to ${result.pcap}`);
  } else {
    await page.locator('#download-pcap').click();
    await page.locator('#evidence-message').waitFor();
    check([404, 501].includes(direct.status()),
      `pcap route answers ${direct.status()}; the page says so instead of failing`);
  }

  // --- Confirm mode: the planner's order waits for the operator's approval. ---
  await page.locator('#nav-blocks').click();
  const proposal = page.locator('#orders tr:has(button.approve)').first();
  await proposal.waitFor();
  const proposalId = await proposal.getAttribute('data-order');
  await shot(page, '06-blocks-proposal');
  await proposal.locator('button.approve').click();
  await page.locator(`#orders tr[data-order="${proposalId}"]:not(:has(.badge.proposed))`).waitFor();
  check(await page.locator(`#orders tr[data-order="${proposalId}"] button.approve`).count() === 0,
    `operator approved the planner's proposal ${proposalId}`);

  // --- Blocks: the operator adds one and removes it. ---
  await page.locator('#add-block input[name=prefix]').fill(BLOCK);
  await page.locator('#add-block input[name=ttl]').fill('10m');
  await page.locator('#add-block input[name=reason]').fill('uji e2e');
  await page.locator('#add-block button[type=submit]').click();
  const blockRow = page.locator(`#orders tr[data-source="${BLOCK}"]`).first();
  await blockRow.waitFor();
  await page.locator('#block-note.ok').waitFor();
  await shot(page, '07-blocks-operator-added');
  const orderId = await blockRow.getAttribute('data-order');
  await blockRow.locator('button.remove').click();
  await page.locator(`#orders tr[data-order="${orderId}"] .badge.removed`).first().waitFor();  // the order's state (a delivery may say so too)
  check(true, `operator added and removed block ${orderId} (${BLOCK})`);
  await shot(page, '08-blocks-operator-removed');

  // --- A viewer sees no controls, and the API refuses a viewer's POST. ---
  const viewerPage = await (await browser.newContext({ viewport: { width: 1400, height: 900 } })).newPage();
  viewerPage.setDefaultTimeout(TIMEOUT);
  await signIn(viewerPage, VIEWER);
  await viewerPage.locator('#nav-blocks').click();
  await viewerPage.locator('#viewer-note').waitFor();
  await viewerPage.locator(`#orders tr[data-order="${orderId}"]`).waitFor();
  check(await viewerPage.locator('#add-block').count() === 0, 'viewer: no add-block form');
  check(await viewerPage.locator('#orders button').count() === 0, 'viewer: no order buttons');
  await shot(viewerPage, '09-blocks-viewer');
  const post = await api.post(new URL('api/v1/orders', BASE).href, {
    headers: auth(VIEWER), data: { prefix: BLOCK, ttl: '10m', reason: 'viewer' },
  });
  check(post.status() === 403, `API refuses a viewer's POST with 403 (got ${post.status()})`);
  const anon = await api.get(new URL('api/v1/status', BASE).href);
  check(anon.status() === 401, `API refuses a request without a token with 401 (got ${anon.status()})`);

  // --- Audit log names the operator's actions. ---
  await page.locator('#nav-audit').click();
  await page.locator('#audit tbody tr').first().waitFor();
  const auditText = await page.locator('#audit').textContent();
  check(['order_approve', 'order_add', 'order_remove'].every((a) => auditText.includes(a)),
    'the audit log view lists the approval and the block added and removed');
  await shot(page, '10-audit');

  // --- Language: Indonesian to English, remembered across a reload. ---
  const navCity = page.locator('#nav-city');
  check((await navCity.textContent()) === 'Kota', 'navigation is in Indonesian');
  await page.locator('#language').selectOption('en');
  await page.waitForFunction(() => document.querySelector('#nav-city').textContent === 'City');
  check(true, 'switching to English changes "Kota" to "City"');
  await page.reload();
  await navCity.waitFor();
  check((await navCity.textContent()) === 'City', 'the language choice is remembered');
  await page.locator('#nav-city').click();
  await page.locator('#sensors tbody tr').first().waitFor();
  await shot(page, '11-city-english');
} catch (e) {
  failed++;
  console.log(`FAIL ${e.stack || e}`);
} finally {
  await browser.close();
}
result.failed = failed;
console.log(`E2E-RESULT ${JSON.stringify(result)}`);
process.exit(failed ? 1 : 0);
