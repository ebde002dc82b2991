// End-to-end tests of the web console in Debian's headless Chromium, driven
// by playwright-core against a demo gateway this script starts itself.
//
//   node checks/console/e2e.mjs --binary target/debug/tongban [--out target/console-screenshots]
//
// An officer signs in, finds a disclosure and verifies the chain; an
// administrator makes an invalid edit and sees the messages next to the
// fields, makes a valid one and sees it take effect on a department's query,
// meets a conflict when someone else saved first, and reverts the change.
// Screenshots of every page go to the output directory.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : fallback;
};
const binary = path.resolve(arg('--binary', 'target/debug/tongban'));
const out = path.resolve(arg('--out', 'target/console-screenshots'));
const chromePath = arg('--chromium', '/usr/bin/chromium');
mkdirSync(path.join(out, 'views'), { recursive: true });

let failures = 0;
let step = 0;
function check(ok, what) {
  step += 1;
  console.log(`${ok ? 'ok' : 'FAIL'} ${step} ${what}`);
  if (!ok) failures += 1;
}

const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

const home = mkdtempSync(path.join(os.tmpdir(), 'tongban-console-'));
const port = await freePort();
const base = `https://127.0.0.1:${port}`;
const gateway = spawn(binary, ['demo', '--home', home, '--listen', `127.0.0.1:${port}`, '--residents', '300'], { stdio: ['ignore', 'ignore', 'pipe'] });
let gatewayLog = '';
gateway.stderr.on('data', (d) => { gatewayLog += d; });

const token = (dept, sub, roles) => execFileSync(binary, ['token', '--home', home, '--dept', dept, '--sub', sub, '--roles', roles, '--ttl', '1h']).toString().trim();

function request(method, urlPath, { headers = {}, body } = {}) {
  const ca = readFileSync(path.join(home, 'certs/ca.pem'));
  return new Promise((resolve, reject) => {
    const req = https.request(`${base}${urlPath}`, { method, headers, ca }, (res) => {
      let data = '';
      res.on('data', (c) => { data += c; });
      res.on('end', () => {
        let json = null;
        try { json = JSON.parse(data); } catch { json = null; }
        resolve({ status: res.statusCode, headers: res.headers, body: json, text: data });
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
  });
}

async function waitReady() {
  for (let i = 0; i < 600; i += 1) {
    try {
      const r = await request('GET', '/readyz');
      if (r.status === 200) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the gateway did not come up:\n${gatewayLog}`);
}

let browser;
try {
  await waitReady();
  const officer = token('shujuju', 'officer-1', 'privacy_officer');
  const admin = token('shujuju', 'admin-1', 'policy_admin');
  const clerk = token('minzheng', 'clerk-007', 'dibao_reviewer');
  const resident = JSON.parse(readFileSync(path.join(home, 'samples/gongan.hukou.jsonl'), 'utf8').split('\n')[0]).id_number;
  const lookup = () => request('GET', `/v1/datasets/gongan.hukou/records/${resident}`, {
    headers: { Authorization: `Bearer ${clerk}`, 'X-Purpose': 'dibao_review', 'X-Case-Ref': 'MZ-2026-0042' },
  });
  const first = await lookup();
  check(first.status === 200 && 'gender' in first.body.record, 'a department looks a resident up (gender disclosed)');

  const page0 = await request('GET', '/console/');
  check(page0.status === 200 && /default-src 'none'/.test(page0.headers['content-security-policy'] || ''), 'the console is served with a strict Content-Security-Policy');

  browser = await chromium.launch({
    executablePath: chromePath,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const problems = [];
  // Refusals the tests provoke (422, 412) are logged by Chromium as failed
  // loads; anything else the console reports (a CSP violation, a script
  // error) is a failure.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(String(e)));
  page.on('dialog', (d) => d.accept());
  // No full ID number in any address the console goes to.
  const addresses = [];
  page.on('framenavigated', (f) => { if (f === page.mainFrame()) addresses.push(f.url()); });
  const shot = (name) => page.screenshot({ path: path.join(out, `${name}.png`), fullPage: true });

  // ---- privacy officer
  await page.goto(`${base}/console/`);
  await page.waitForSelector('#token');
  await shot('01-signin');
  check(!(await page.isVisible('#signout')), 'the sign-out button is hidden on the sign-in page');
  await page.fill('#token', officer);
  await page.click('button[type=submit]');
  await page.waitForSelector('#q-consumer');
  check(page.url().includes('#/audit'), 'an officer lands on the audit search');
  check(await page.isVisible('text=审计检索'), 'the console speaks Chinese first');
  const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('tongban.token') !== null, local: Object.keys(localStorage).some((k) => localStorage.getItem(k).includes('.')) , cookie: document.cookie }));
  check(stored.session && !stored.local && stored.cookie === '', 'the token is in sessionStorage, not localStorage or a cookie');

  check(page.url().includes('kind=query') || (await page.inputValue('#q-kind')) === 'query', "the search leaves out the console's own reads by default");
  await page.fill('#q-consumer', '民政局');
  await page.selectOption('#q-decision', 'allow');
  await page.click('form.filters button[type=submit]');
  await page.waitForSelector('table tbody tr');
  check(page.url().includes('consumer=minzheng') && page.url().includes('decision=allow'), 'the filters are reflected in the URL, a department typed by its name searched by its code');
  check(!(await page.textContent('table')).includes('audit.search'), "the officer's own searches are not listed");
  check(/本页 \d+ 条/.test(await page.textContent('#count')), 'the result count is shown');
  const exported = page.waitForEvent('download');
  await page.click('text=导出本时段（CSV');
  check((await exported).suggestedFilename().endsWith('.csv'), 'the period of a search exports as signed CSV');
  const shared = page.url();
  await shot('02-audit-search');
  await page.click('table tbody tr td a');
  await page.waitForSelector('dl.kv');
  const detail = await page.textContent('main');
  check(/[0-9a-f]{64}/.test(detail) && detail.includes('minzheng-dibao-hukou'), 'an event shows its hash, previous hash and grant');
  await shot('03-event');
  await page.goto(shared);
  await page.waitForSelector('table tbody tr');
  check((await page.inputValue('#q-consumer')) === 'minzheng', 'a shared search link opens with its filters');

  // A resident searched by ID: the address carries the pseudonym only.
  await page.fill('#q-resident', resident);
  await page.click('form.filters button[type=submit]');
  await page.waitForURL(/pseudonym=/);
  await page.waitForSelector('table tbody tr');
  check(!page.url().includes(resident) && page.url().includes('pseudonym='), 'a resident is searched for without the ID in the address');

  await page.click('nav >> text=个人披露报告');
  await page.fill('#d-resident', resident);
  await page.click('form.filters button[type=submit]');
  await page.waitForSelector('table tbody tr');
  const report = await page.textContent('main');
  check(report.includes('民政局') && report.includes('MZ-2026-0042'), 'the disclosure report names the department and the case');
  check(report.includes('查询：提供了下列信息') && !page.url().includes(resident), 'it says the kind of use, and the ID stays out of the address');
  check((await page.textContent('#issuer')).includes('数据局'), 'the report names the issuing body');
  await shot('04-disclosures');
  const download = page.waitForEvent('download');
  await page.click('text=下载 CSV');
  const file = await download;
  check(file.suggestedFilename().endsWith('.csv'), 'the disclosure report downloads as CSV');
  await page.emulateMedia({ media: 'print' });
  await page.screenshot({ path: path.join(out, '05-disclosures-print.png'), fullPage: true });
  check(!(await page.isVisible('header.top')), 'the printed report has no navigation');
  // A4 landscape less its margins is about 1030 CSS pixels: every column fits.
  await page.setViewportSize({ width: 1030, height: 728 });
  const printed = await page.$$eval('.report th', (ths) => ths.filter((th) => getComputedStyle(th).display !== 'none').map((th) => ({ text: th.textContent, right: th.getBoundingClientRect().right, width: th.getBoundingClientRect().width })));
  const clipped = printed.filter((c) => c.right > 1031 || c.width < 24).map((c) => c.text);
  check(clipped.length === 0 && printed.length === 7 && printed.some((c) => c.text === '使用方式'), `the printed report has the resident's seven columns, every one inside A4 landscape${clipped.length ? ': ' + clipped.join(', ') : ''}`);
  await page.pdf({ path: path.join(out, '05-disclosures.pdf'), format: 'A4', landscape: true, printBackground: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ media: 'screen' });

  // The case's materials (免提交清单), printable.
  await page.click('nav >> text=办件材料');
  await page.fill('#c-consumer', 'minzheng');
  await page.fill('#c-case', 'MZ-2026-0042');
  await page.click('form.filters button[type=submit]');
  await page.waitForSelector('table tbody tr');
  const materials = await page.textContent('main');
  check(materials.includes('公安局') && materials.includes('户籍'), 'a case lists the materials obtained under it, by owner and dataset');
  await shot('05b-case');

  await page.click('nav >> text=链校验');
  await page.click('text=开始校验');
  await page.waitForSelector('#verdict');
  check((await page.getAttribute('#verdict', 'class')).includes('ok') && (await page.textContent('#verdict')).includes('完整'), 'the chain verifies with a clear verdict');
  check(/签名检查点覆盖至第 \d+ 号事件|尚无签名检查点/.test(await page.textContent('#coverage')), 'the chain check says how far the signed checkpoints reach');
  await shot('06-verify');

  await page.click('nav >> text=统计');
  await page.waitForSelector('svg.chart');
  check(await page.isVisible('svg.chart rect'), 'statistics are drawn as a chart');
  check((await page.$$('details.chart-table tbody tr')).length > 0, 'the chart has a table alternative');
  await page.waitForSelector('text=免提交材料');
  const evaluation = await page.textContent('main');
  check(evaluation.includes('民政局') && evaluation.includes('公安局'), 'the evaluation shows what the exchange spared residents, by department pair');
  await shot('07-stats');

  await page.click('#lang');
  await page.waitForSelector('nav >> text=Statistics');
  // The view is drawn again after the switch: wait for it rather than read it at once.
  const english = await page.waitForSelector('text=Requests and denials per day', { timeout: 10000 }).then(() => true, () => false);
  check(english, 'the language switch turns the console to English');
  await page.click('#lang');
  await page.waitForSelector('nav >> text=统计');

  // Keyboard: the skip link is the first stop and the navigation is reachable.
  await page.reload();
  await page.waitForSelector('nav >> text=统计');
  await page.keyboard.press('Tab');
  check((await page.evaluate(() => document.activeElement.className)) === 'skip', 'the first Tab stop is the skip link');
  // The focus ring against the white page: WCAG's contrast ratio of at least 3:1.
  await page.focus('#s-from');
  await page.keyboard.press('Tab');
  const ring = await page.evaluate(() => {
    const lum = (rgb) => {
      const [r, g, b] = rgb.match(/\d+/g).slice(0, 3).map((v) => { const c = Number(v) / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const style = getComputedStyle(document.activeElement);
    return (1.05) / (lum(style.outlineColor) + 0.05);
  });
  check(ring >= 3, `the focus ring has at least 3:1 contrast against the page (${ring.toFixed(1)}:1)`);
  check((await page.title()).startsWith('统计'), 'the tab title names the view');

  await page.click('#signout');
  await page.waitForSelector('#token');

  // ---- policy administrator
  await page.fill('#token', admin);
  await page.click('button[type=submit]');
  await page.waitForSelector('text=数据集目录');
  check(page.url().includes('#/catalog'), 'an administrator lands on the catalog');
  check(!(await page.isVisible('nav >> text=审计检索')), 'an administrator sees no audit pages');
  await shot('08-catalog');

  await page.goto(`${base}/console/#/grant/minzheng-dibao-hukou`);
  await page.waitForSelector('#g-quota');
  await page.fill('#g-quota', 'lots');
  const fields0 = await page.inputValue('#g-fields-0');
  await page.fill('#g-fields-0', `${fields0}, nosuchfield`);
  await page.click('text=预览访问变化');
  await page.waitForSelector('#g-quota-error:not(:empty)');
  check((await page.textContent('#g-quota-error')).includes('lots'), 'an invalid quota is explained next to the quota field');
  check((await page.textContent('#g-fields-0-error')).includes('nosuchfield'), 'an unknown field is explained next to the fields');
  await shot('09-grant-invalid');
  await page.fill('#g-reason', '调整配额');
  await page.click('button[type=submit]');
  await page.waitForSelector('text=有错误，未保存');
  check((await lookup()).body.record.gender !== undefined, 'nothing was saved');

  await page.goto(`${base}/console/#/catalog`);
  await page.goto(`${base}/console/#/grant/minzheng-dibao-hukou`);
  await page.waitForSelector('#g-fields-0');
  const without = (await page.inputValue('#g-fields-0')).split(',').map((s) => s.trim()).filter((s) => s !== 'gender').join(', ');
  await page.fill('#g-fields-0', without);
  await page.click('text=预览访问变化');
  await page.waitForSelector('#access-changes');
  check((await page.textContent('#access-changes')).includes('loses gender'), 'the preview shows who loses which field');
  await page.click('button[type=submit]');
  await page.waitForSelector('#g-reason-error:not(:empty)');
  check((await page.textContent('#g-reason-error')).includes('必填'), 'a save without a reason is not sent');
  await page.fill('#g-reason', '低保审核不再需要性别');
  await page.click('button[type=submit]');
  await page.waitForSelector('#saved');
  check((await page.textContent('#g-version')).includes('2'), 'the version shown is the new one');
  await shot('10-grant-saved');
  await page.fill('#g-reason', '再次保存');
  await page.click('button[type=submit]');
  await page.waitForSelector('#no-change');
  check(true, 'a save that changes nothing is refused, and said so');
  // The gateway's own messages come in Chinese.
  await page.goto(`${base}/console/#/grant/no-such-grant`);
  await page.waitForSelector('.notice.bad');
  check(/没有授权/.test(await page.textContent('.notice.bad')), "the gateway's messages are shown in Chinese");
  await page.goto(`${base}/console/#/grant/minzheng-dibao-hukou`);
  await page.waitForSelector('#g-reason');
  const after = await lookup();
  check(after.status === 200 && !('gender' in after.body.record), 'the saved edit takes effect on the next department query');

  // Someone else saves first: the console's next save is a conflict.
  const current = await request('GET', '/v1/admin/grants/minzheng-dibao-hukou', { headers: { Authorization: `Bearer ${admin}` } });
  const theirs = { ...current.body.grant, title: `${current.body.grant.title}（他人修改）` };
  delete theirs.version;
  const put = await request('PUT', '/v1/admin/grants/minzheng-dibao-hukou', {
    headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json', 'If-Match': current.headers.etag },
    body: theirs,
  });
  check(put.status === 200, 'another administrator saves the grant');
  await page.fill('#g-title', '低保审核查询户籍信息（本页修改）');
  await page.fill('#g-reason', '改名称');
  await page.click('button[type=submit]');
  await page.waitForSelector('#conflict');
  check(true, 'the console reports the conflict instead of overwriting');
  await shot('11-grant-conflict');

  // History with diffs; revert the change that removed gender.
  await page.goto(`${base}/console/#/history?id=minzheng-dibao-hukou`);
  await page.waitForSelector('pre.diff');
  await shot('12-history');
  const revertButton = page.locator('button.danger', { hasText: '恢复到版本 1' });
  await page.fill('#h-reason', '恢复性别字段');
  check((await revertButton.count()) === 1, 'the change to version 2 can be reverted to version 1');
  await revertButton.click();
  await page.waitForSelector('#reverted');
  const reverted = await lookup();
  check(reverted.status === 200 && 'gender' in reverted.body.record, 'after the revert the department sees gender again');

  // A grant made from another, then deleted, each with its reason.
  await page.goto(`${base}/console/#/grant/minzheng-dibao-hukou`);
  await page.waitForSelector('#g-new-id');
  await page.fill('#g-reason', '试点复制一份授权');
  await page.fill('#g-new-id', 'minzheng-dibao-hukou-copy');
  await page.click('text=另存为新授权');
  await page.waitForURL(/grant\/minzheng-dibao-hukou-copy/);
  await page.waitForSelector('#g-new-id');
  check((await request('GET', '/v1/admin/grants/minzheng-dibao-hukou-copy', { headers: { Authorization: `Bearer ${admin}` } })).status === 200, 'a grant is created from another in the console');
  await page.fill('#g-reason', '试点结束');
  await page.click('text=删除此授权');
  await page.waitForSelector('text=数据集目录');
  check((await request('GET', '/v1/admin/grants/minzheng-dibao-hukou-copy', { headers: { Authorization: `Bearer ${admin}` } })).status === 404, 'and deleted, with its reason');

  await page.click('nav >> text=决策解释');
  await page.fill('#x-dept', 'minzheng');
  await page.fill('#x-roles', 'dibao_reviewer');
  await page.fill('#x-dataset', 'gongan.hukou');
  await page.fill('#x-purpose', 'school_admission');
  await page.click('form.filters button[type=submit]');
  await page.waitForSelector('#result .notice');
  check((await page.textContent('#result')).includes('purpose-not-granted'), 'the decision explainer says why a request would be refused');
  await shot('13-decide');

  // The emergency stop: suspend a department from the console, see its
  // query refused, resume it.
  await page.click('nav >> text=部门与停用');
  await page.waitForSelector('table');
  await page.fill('input[aria-label="停用原因 minzheng"]', '系统疑似被入侵');
  await page.click('tr:has(code:text-is("minzheng")) >> button.danger');
  await page.waitForSelector('tr:has(code:text-is("minzheng")) >> text=已停用');
  const refused = await lookup();
  check(refused.status === 403 && refused.body.type.endsWith('/department-suspended'), 'a department suspended in the console is refused');
  await shot('14-departments-suspended');
  await page.click('tr:has(code:text-is("minzheng")) >> text=恢复');
  await page.waitForSelector('tr:has(code:text-is("minzheng")) >> text=正常');
  check((await lookup()).status === 200, 'and served again once resumed');

  // The token deny-list: deny the clerk's tokens issued until now.
  await page.click('nav >> text=令牌拒绝名单');
  await page.waitForSelector('#t-jti');
  await page.fill('#t-sub', 'clerk-007');
  await page.fill('#t-reason', '令牌泄露');
  await page.click('form.filters button[type=submit]');
  await page.waitForSelector('td:text-is("clerk-007")');
  const denied = await lookup();
  check(denied.status === 401 && denied.body.type.endsWith('/token-revoked'), 'a token denied in the console is refused');
  await shot('15-tokens');
  await page.fill('input[aria-label="移除原因 sub:clerk-007"]', '已更换密钥');
  await page.click('button[aria-label="移除 sub:clerk-007"]');
  await page.waitForSelector('text=名单为空');
  check((await lookup()).status === 200, 'an entry removed in the console is served again');

  // ---- a resident, on a phone: their own record, an objection
  const residentToken = execFileSync(binary, ['token', '--home', home, '--resident', resident, '--ttl', '1h']).toString().trim();
  const phone = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const mp = await phone.newPage();
  mp.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of 4\d\d/.test(m.text())) problems.push(m.text());
  });
  mp.on('pageerror', (e) => problems.push(String(e)));
  await mp.goto(`${base}/console/me`);
  await mp.waitForSelector('#token');
  await mp.fill('#token', residentToken);
  await mp.click('button[type=submit]');
  await mp.waitForSelector('article.card');
  const mine = await mp.textContent('main');
  check(mine.includes('民政局') && mine.includes('依据') && mine.includes('MZ-2026-0042') && !mine.includes('clerk-007'),
    'a resident reads who used their data, why, on what basis and under which case, without the clerk');
  check(!mine.includes(resident) && !mp.url().includes(resident), 'the full ID number is neither on the page nor in the address');
  check(await mp.evaluate(() => document.documentElement.scrollWidth <= 390), 'the resident page fits a phone without sideways scrolling');
  await mp.screenshot({ path: path.join(out, '17-resident-phone.png'), fullPage: true });
  await mp.click('text=对这次使用提出异议');
  await mp.fill('form.objection textarea', '我没有申请低保，为何查询我的户籍？');
  await mp.click('form.objection button[type=submit]');
  await mp.waitForSelector('.notice.ok');
  check((await mp.textContent('.notice.ok')).includes('前答复'), 'the objection is taken with its due day');
  await mp.screenshot({ path: path.join(out, '18-resident-objection.png'), fullPage: true });

  // The officer answers it in the console; the resident reads the answer.
  await page.click('#signout');
  await page.waitForSelector('#token');
  await page.fill('#token', officer);
  await page.click('button[type=submit]');
  await page.waitForSelector('#q-consumer');
  await page.click('nav >> text=居民异议');
  await page.waitForSelector('table tbody tr');
  await shot('19-objections');
  await page.fill('textarea[aria-label^="答复"]', '经核实，该查询用于您家庭成员的低保复核，符合规定。');
  await page.click('button:text-is("答复")');
  await page.waitForSelector('tbody >> text=已答复');
  await mp.reload();
  await mp.waitForSelector('.reply');
  check((await mp.textContent('.reply')).includes('低保复核'), "the resident reads the officers' answer");
  await mp.screenshot({ path: path.join(out, '20-resident-answered.png'), fullPage: true });
  await phone.close();

  // ---- the owner's data steward: the use of its own datasets only
  await page.click('#signout');
  await page.waitForSelector('#token');
  await page.fill('#token', token('gongan', 'steward-1', 'data_steward'));
  await page.click('button[type=submit]');
  await page.waitForSelector('table tbody tr');
  // Datasets are shown by title, the code on hover.
  const owned = await page.$$eval('table tbody tr', (rows) => rows.map((r) => { const c = r.children[5]; const named = c.querySelector('[title]'); return named ? named.title : c.textContent; }));
  check(owned.length > 0 && owned.every((d) => d === 'gongan.hukou'), "a data steward's search lists only the use of its own department's datasets");
  check(await page.isVisible('text=本部门数据的管理员'), 'the steward is told the search is limited to its own data');
  check(!(await page.isVisible('nav >> text=居民异议')) && !(await page.isVisible('nav >> text=个人披露报告')), "a steward sees no officers' pages");
  await shot('21-steward-search');
  await page.click('nav >> text=统计');
  await page.waitForSelector('svg.chart');
  await shot('22-steward-stats');

  // ---- the sharing workflow: a consuming department files a request, the
  // data authority reviews it, the owner's steward answers; then a data
  // objection reported by a consumer and answered by the owner.
  const signInAs = async (tok) => {
    await page.click('#signout');
    await page.waitForSelector('#token');
    await page.fill('#token', tok);
    await page.click('button[type=submit]');
  };
  const yibao = token('yibao', 'clerk-3', 'enrollment_clerk');
  const owned1 = JSON.parse(readFileSync(path.join(home, 'samples/ziranziyuan.budongchan.jsonl'), 'utf8').split('\n')[0]).id_number;
  const propertyLookup = () => request('GET', `/v1/datasets/ziranziyuan.budongchan/records/${owned1}`, {
    headers: { Authorization: `Bearer ${yibao}`, 'X-Purpose': 'medical_insurance_enrollment', 'X-Case-Ref': 'YB-2026-0001' },
  });
  check((await propertyLookup()).status === 403, 'before any request, yibao may not read the real-estate register');
  await signInAs(yibao);
  await page.waitForSelector('summary >> text=提出共享申请');
  await page.click('summary >> text=提出共享申请');
  await page.selectOption('#f-dataset', 'ziranziyuan.budongchan');
  await page.check('input[name=fields][value=property_count]');
  await page.fill('#f-title', '医保缴费困难认定核验不动产');
  await page.fill('#f-use', '城乡居民医保参保缴费困难认定：核实名下不动产');
  await page.fill('#f-basis', '《社会保险法》第二十五条');
  await page.fill('#f-purposes', 'medical_insurance_enrollment');
  await page.fill('#f-roles', 'enrollment_clerk');
  await page.click('form.editor button[type=submit]');
  await page.waitForSelector('#filed');
  check((await page.textContent('#filed')).includes('SR-') && (await page.textContent('table')).includes('已提交'), 'a consuming department files a sharing request in the console');
  await shot('23-sharing-filed');
  await signInAs(token('shujuju', 'reviewer-1', 'data_authority'));
  await page.waitForSelector('button:text-is("提交审核意见")');
  await page.click('button:text-is("提交审核意见")');
  await page.waitForSelector('.req-state >> text=已审核');
  check(true, 'the data authority approves the review in the console');
  await shot('24-sharing-reviewed');
  await signInAs(token('ziranziyuan', 'steward-7', 'data_steward'));
  await page.click('nav >> text=共享申请');
  await page.waitForSelector('button:text-is("提交答复")');
  await page.click('button:text-is("提交答复")');
  await page.waitForSelector('.req-state >> text=已批准');
  check((await propertyLookup()).status === 200, "the owner's steward approves in the console, and the lookup is then served");
  await shot('25-sharing-approved');

  const reporter = token('minzheng', 'reviewer-9', 'dibao_reviewer');
  await signInAs(reporter);
  await page.click('nav >> text=数据疑义');
  await page.waitForSelector('summary >> text=提出疑义');
  await page.click('summary >> text=提出疑义');
  const hukouOption = await page.$eval('#do-dataset option[title="gongan.hukou"]', (o) => o.value);
  await page.selectOption('#do-dataset', hukouOption);
  await page.selectOption('#do-field', 'hukou_address');
  await page.fill('#do-resident', resident);
  await page.fill('#do-seq', String(first.headers['x-audit-seq']));
  await page.fill('#do-what', '户籍地址与申请人提交的居住证明不一致');
  await page.click('form.editor button[type=submit]');
  await page.waitForSelector('#reported');
  check(!page.url().includes(resident) && !(await page.textContent('main')).includes(resident), 'a data objection is reported; the ID is neither in the address nor shown back to the reporter');
  await shot('26-data-objection-reported');
  await signInAs(token('gongan', 'steward-1', 'data_steward'));
  await page.click('nav >> text=数据疑义');
  await page.waitForSelector('button:text-is("提交答复")');
  check((await page.textContent('table')).includes(resident), "the owner's steward sees the resident's ID to find the record");
  await page.selectOption('select[aria-label^="核实结果"]', 'corrected');
  await page.fill('input[aria-label^="说明"]', '已按户籍档案更正');
  await page.click('button:text-is("提交答复")');
  await page.waitForSelector('td >> text=已更正');
  await shot('27-data-objection-answered');
  await signInAs(reporter);
  await page.click('nav >> text=数据疑义');
  await page.waitForSelector('td >> text=已更正');
  check((await page.textContent('table')).includes('已按户籍档案更正'), 'the reporter reads the answer');
  await page.click('#signout');
  await page.waitForSelector('#token');
  await page.fill('#token', admin);
  await page.click('button[type=submit]');
  await page.waitForSelector('text=数据集目录');

  // A grant whose validity ended carries a badge in the catalog.
  const teacher = await request('GET', '/v1/admin/grants/jiaoyu-teacher-qualification', { headers: { Authorization: `Bearer ${admin}` } });
  const ended = { ...teacher.body.grant, conditions: { ...teacher.body.grant.conditions, valid_until: '2020-12-31' }, reason: '试点结束' };
  delete ended.version;
  const endedPut = await request('PUT', '/v1/admin/grants/jiaoyu-teacher-qualification', {
    headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json', 'If-Match': teacher.headers.etag },
    body: ended,
  });
  check(endedPut.status === 200, 'a grant is given an end in the past');
  // A tablet.
  await page.setViewportSize({ width: 768, height: 1024 });
  await page.goto(`${base}/console/#/catalog`);
  await page.reload();
  await page.waitForSelector('text=数据集目录');
  check(await page.isVisible('tr:has(code:text-is("jiaoyu-teacher-qualification")) >> text=已失效'), 'an expired grant carries a badge in the catalog');
  await shot('16-catalog-tablet');

  // Every view of every role at 1280×800 and 768×1024 (kept as CI
  // artifacts): at 768 the page itself never scrolls sideways (wide tables
  // scroll in their own box).
  const views = [];
  for (const [who, tok] of [['officer', officer], ['admin', admin], ['authority', token('shujuju', 'reviewer-2', 'data_authority')]]) {
    await signInAs(tok);
    await page.waitForSelector('nav a');
    const links = await page.$$eval('nav a', (as) => as.map((a) => [a.getAttribute('href'), a.textContent]));
    for (const [href, label] of links) {
      for (const [w, hgt] of [[1280, 800], [768, 1024]]) {
        await page.setViewportSize({ width: w, height: hgt });
        await page.goto(`${base}/console/${href}`);
        await page.waitForSelector('main h1');
        await page.waitForTimeout(150);
        await page.screenshot({ path: path.join(out, `views/${who}-${href.replace(/[^a-z]/g, '')}-${w}.png`), fullPage: true });
        if (w === 768 && await page.evaluate(() => document.documentElement.scrollWidth > 770)) views.push(`${who} ${label}`);
      }
    }
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  check(views.length === 0, `every view fits 768 pixels without the page scrolling sideways${views.length ? ': ' + views.join(', ') : ''}`);

  const withId = addresses.filter((u) => [resident, owned1].some((id) => decodeURIComponent(u).includes(id)));
  check(addresses.length > 10 && withId.length === 0, `no 18-digit ID in any of the ${addresses.length} addresses the console went to${withId.length ? ': ' + withId.join(' ') : ''}`);
  check(problems.length === 0, `no script errors or CSP violations in the browser${problems.length ? ': ' + problems.join(' | ') : ''}`);
} catch (e) {
  console.log(`FAIL ${e.stack || e}`);
  failures += 1;
} finally {
  if (browser) await browser.close();
  gateway.kill('SIGTERM');
  rmSync(home, { recursive: true, force: true });
}
console.log(`${step - failures} of ${step} checks passed; screenshots in ${out}`);
process.exit(failures ? 1 : 0);
