// tongban console: privacy officers' and administrators' pages over the
// gateway's own API. No build step, no third-party code. The bearer token
// lives in sessionStorage only (gone when the tab closes); every element is
// built with textContent, never from HTML strings.

const L = {
  title: ['通办控制台', 'tongban console'],
  lang: ['English', '中文'],
  signout: ['退出', 'Sign out'],
  signin: ['登录', 'Sign in'],
  signinIntro: ['粘贴访问令牌（JWT），或从文件载入。令牌只保存在本标签页的会话存储中，关闭即清除。', 'Paste an access token (JWT), or load it from a file. It is kept in this tab\'s session storage only and is gone when the tab closes.'],
  token: ['访问令牌', 'Access token'],
  tokenFile: ['从文件载入令牌', 'Load the token from a file'],
  badToken: ['这不是可读的 JWT。', 'This is not a readable JWT.'],
  expired: ['令牌已过期，请重新登录。', 'The token has expired; sign in again.'],
  noRole: ['此令牌没有任何角色。', 'This token holds no role.'],
  stewardNote: ['您是本部门数据的管理员：这里只显示对本部门数据集的使用。', "You are your department's data steward: only the use of your department's datasets is shown here."],
  refused: ['网关拒绝了请求', 'The gateway refused the request'],
  loading: ['加载中…', 'Loading…'],
  navAudit: ['审计检索', 'Audit search'],
  navDisclosures: ['个人披露报告', 'Disclosure report'],
  navCase: ['办件材料', 'Case materials'],
  evaluation: ['评估：为居民免去的材料（近一年）', 'Evaluation: what the exchange spared residents (last year)'],
  evaluationIntro: ['按月份和“调用部门 → 提供部门”统计：服务的办件、经网关取得而无需居民提交的材料（办件 × 数据集）、以核验代替的证明。定义见 README。', 'Per month and consumer → owner pair: cases served, materials obtained instead of from the resident (case × dataset), verify answers given instead of certificates. Definitions in the README.'],
  month: ['月份', 'Month'],
  pair: ['调用部门 → 提供部门', 'Consumer → owner'],
  casesServed: ['服务办件', 'Cases'],
  materials: ['免提交材料', 'Materials'],
  verifyAnswers: ['核验代替证明', 'Verify answers'],
  withoutCase: ['无办件编号', 'Without a case'],
  caseFor: ['办件材料清单（免提交清单）', 'Case materials (what the resident did not have to bring)'],
  caseIntro: ['列出一个办件中经网关取得的全部材料：来自哪个部门、哪个数据集和字段、何时、由谁、依据哪项授权。办件编号只在本部门内唯一，请同时填写部门。', 'Everything obtained through the gateway under one case: from which department, which dataset and fields, when, by whom, under which grant. A case reference is unique only within its department: name the department too.'],
  noMaterials: ['该办件没有取得任何材料。', 'Nothing was obtained under this case.'],
  ownerDept: ['提供部门', 'Owner'],
  signed: ['签名凭证', 'Signed'],
  navVerify: ['链校验', 'Verify chain'],
  navStats: ['统计', 'Statistics'],
  navObjections: ['居民异议', 'Objections'],
  objectionsIntro: ['居民对本人数据使用提出的异议，按答复期限排列。答复后居民可在“我的数据”页看到。', "Residents' objections to uses of their data, due soonest first. Residents read the answers on their own page."],
  objState: ['状态', 'State'],
  objDue: ['答复期限', 'Due'],
  objUse: ['所涉使用', 'Use objected to'],
  objText: ['居民意见', "Resident's words"],
  objReply: ['答复', 'Answer'],
  objOverdue: ['已逾期', 'overdue'],
  objSend: ['答复', 'Answer'],
  objClose: ['答复并办结', 'Answer and close'],
  objNone: ['没有待处理的异议。', 'No objections waiting.'],
  open: ['处理中', 'open'],
  answered: ['已答复', 'answered'],
  closed: ['已办结', 'closed'],
  navCatalog: ['目录与授权', 'Catalog & grants'],
  navDecide: ['决策解释', 'Decision explainer'],
  navDepartments: ['部门与停用', 'Departments'],
  navTokens: ['令牌拒绝名单', 'Token deny-list'],
  search: ['检索', 'Search'],
  resident: ['公民身份号码', 'Resident ID'],
  consumer: ['调用部门', 'Consumer department'],
  subject: ['经办人', 'Subject'],
  dataset: ['数据集', 'Dataset'],
  purpose: ['用途', 'Purpose'],
  case_ref: ['办件编号', 'Case reference'],
  decision: ['结果', 'Decision'],
  any: ['（任意）', '(any)'],
  from: ['起', 'From'],
  to: ['止', 'To'],
  limit: ['每页', 'Per page'],
  seq: ['序号', 'Seq'],
  time: ['时间', 'Time'],
  operation: ['操作', 'Operation'],
  status: ['状态码', 'Status'],
  state: ['状态', 'State'],
  operator: ['（运营部门，不可停用）', '(the operator: cannot be suspended)'],
  next: ['下一页', 'Next page'],
  noEvents: ['没有符合条件的事件。', 'No events match.'],
  shareHint: ['检索条件保存在地址栏中，可以复制链接分享。', 'The filters are in the address bar: copy the link to share this search.'],
  event: ['事件', 'Event'],
  hash: ['哈希', 'Hash'],
  prevHash: ['前一事件哈希', 'Previous hash'],
  grant: ['授权', 'Grant'],
  policyVersion: ['策略版本', 'Policy version'],
  fields: ['字段', 'Fields'],
  caseRef: ['办件编号', 'Case reference'],
  reason: ['原因', 'Reason'],
  previous: ['上一事件', 'Previous event'],
  disclosuresFor: ['个人数据披露报告', 'Disclosure report'],
  disclosuresIntro: ['列出该居民的数据每一次离开网关的记录：何时、哪个部门和经办人、用途、业务编号、数据集与字段。', 'Every time this resident\'s data left the gateway: when, which department and person, purpose, case reference, dataset and fields.'],
  show: ['查询', 'Show'],
  print: ['打印', 'Print'],
  csv: ['下载 CSV', 'Download CSV'],
  count: ['条数', 'Count'],
  generated: ['生成时间', 'Generated'],
  noDisclosures: ['没有披露记录。', 'No disclosures.'],
  verifyIntro: ['重新计算整条哈希链并校验每个签名检查点。', 'Recompute the whole hash chain and check every signed checkpoint.'],
  verifyRun: ['开始校验', 'Verify now'],
  intact: ['完整：链未被篡改', 'Intact: the chain has not been altered'],
  broken: ['已损坏：发现篡改', 'Broken: the chain was altered'],
  checked: ['已校验事件', 'Events checked'],
  checkpoints: ['已校验检查点', 'Checkpoints checked'],
  head: ['链头', 'Head'],
  epochs: ['算法时期', 'Epochs'],
  firstBroken: ['第一个断点', 'First broken link'],
  statsIntro: ['按天统计请求、拒绝，以及按部门和用途的分布；异常标记链接到相关事件。', 'Requests and denials per day, by department and purpose; anomaly flags link to their events.'],
  show2: ['显示', 'Show'],
  total: ['合计', 'Total'],
  allow: ['允许', 'allow'],
  deny: ['拒绝', 'deny'],
  error: ['错误', 'error'],
  byConsumer: ['按部门', 'By department'],
  byPurpose: ['按用途', 'By purpose'],
  flags: ['异常标记', 'Anomaly flags'],
  noFlags: ['没有异常标记。', 'No flags.'],
  review: ['复核', 'Review'],
  reviewed: ['已复核', 'Reviewed'],
  reviewNote: ['复核意见', 'What you found'],
  markReviewed: ['标记为已复核', 'Mark reviewed'],
  day: ['日期', 'Day'],
  kind: ['类型', 'Kind'],
  events: ['事件', 'Events'],
  datasets: ['数据集目录', 'Datasets'],
  grants: ['授权（谁可以为何用途查看哪些字段）', 'Grants (who may see which fields, for what)'],
  owner: ['提供部门', 'Owner'],
  class: ['共享类别', 'Sharing class'],
  classUnconditional: ['无条件共享', 'unconditional'],
  classConditional: ['有条件共享', 'conditional'],
  classNone: ['不予共享', 'not shared'],
  roles: ['角色', 'Roles'],
  purposes: ['用途', 'Purposes'],
  operations: ['操作', 'Operations'],
  version: ['版本', 'Version'],
  edit: ['编辑', 'Edit'],
  history: ['历史', 'History'],
  editGrant: ['编辑授权', 'Edit grant'],
  titleField: ['名称', 'Title'],
  basis: ['法律依据', 'Legal basis'],
  quota: ['配额', 'Quota'],
  caseRefRequired: ['必须提供业务编号', 'Case reference required'],
  verifyOnly: ['仅核验字段', 'Verify-only fields'],
  commaHint: ['以逗号分隔', 'comma-separated'],
  preview: ['预览访问变化', 'Preview access changes'],
  save: ['保存', 'Save'],
  reload: ['重新载入', 'Reload'],
  invalid: ['有错误，未保存。请修改标出的字段。', 'There are errors; nothing was saved. Fix the marked fields.'],
  noChange: ['访问权限没有变化。', 'No access changes.'],
  accessChanges: ['访问变化', 'Access changes'],
  saved: ['已保存，新版本', 'Saved: now version'],
  conflict: ['保存冲突：其他人已先保存了此授权。请重新载入后再修改。', 'Conflict: someone else saved this grant first. Reload it and make your change again.'],
  historyOf: ['变更历史', 'Change history'],
  author: ['修改人', 'Author'],
  action: ['动作', 'Action'],
  revert: ['撤销此变更', 'Revert this change'],
  revertTo: ['恢复到版本 {v}（以新版本生效，记入审计日志）', 'Put version {v} back (in force as a new version, audited)'],
  revertConfirm: ['确定将授权 {id} 恢复到版本 {v} 吗？这会生效并记入审计日志。', 'Put grant {id} back to version {v}? It takes effect at once and is audited.'],
  reverted: ['已恢复，新版本', 'Reverted: now version'],
  noHistory: ['没有记录的变更。', 'No recorded changes.'],
  decideIntro: ['不发起查询，解释一个请求会被如何决定。', 'Explain how a request would be decided, without running it.'],
  dept: ['部门', 'Department'],
  explain: ['解释', 'Explain'],
  date: ['日期', 'Date'],
  nearest: ['最接近的授权', 'Nearest grant'],
  departments: ['部门', 'Departments'],
  name: ['名称', 'Name'],
  suspended: ['已停用', 'Suspended'],
  active: ['正常', 'Active'],
  since: ['自', 'Since'],
  by: ['操作人', 'By'],
  suspend: ['停用', 'Suspend'],
  resume: ['恢复', 'Resume'],
  suspendReason: ['停用原因', 'Reason for the suspension'],
  suspendConfirm: ['确定停用部门 {d} 吗？它的所有请求将立即被拒绝。', 'Suspend {d}? Every request of its systems is refused at once.'],
  resumeConfirm: ['确定恢复部门 {d} 吗？', 'Resume {d}?'],
  tokensIntro: ['拒绝某个令牌（jti），或某个经办人在某时间之前签发的全部令牌，直到条目过期。', 'Deny one token (jti), or every token of a subject issued before a time, until the entry expires.'],
  jti: ['令牌编号 jti', 'Token id (jti)'],
  sub: ['经办人 sub', 'Subject (sub)'],
  issuedBefore: ['在此之前签发（默认现在）', 'Issued before (default now)'],
  expires: ['条目过期时间（默认 7 天）', 'Entry expires (default 7 days)'],
  add: ['加入拒绝名单', 'Add to the deny-list'],
  added: ['已加入。', 'Added.'],
  noEntries: ['名单为空。', 'The list is empty.'],
  required: ['必填', 'required'],
  auditSeq: ['审计序号', 'Audit seq'],
  chartAsTable: ['以表格查看图中数据', 'The chart as a table'],
  op_lookup: ['查询', 'lookup'],
  op_verify: ['核验', 'verify'],
  op_batch: ['批量查询', 'batch'],
  op_catalog: ['查看目录', 'catalog'],
  op_replay: ['重放', 'replay'],
  validFrom: ['生效日期', 'Valid from'],
  newGrantId: ['新授权编号', 'New grant id'],
  saveAsNew: ['另存为新授权', 'Save as a new grant'],
  deleteGrant: ['删除此授权', 'Delete this grant'],
  deleteConfirm: ['确定删除授权 {id} 吗？其使用者将立即失去访问，并记入审计日志。', 'Delete grant {id}? Its consumer loses access at once; it is audited.'],
  casePattern: ['办件编号格式（正则表达式）', 'Case reference pattern (regular expression)'],
  batchLimit: ['批量上限', 'Batch limit'],
  maskedFields: ['脱敏字段', 'Masked fields'],
  predicates: ['核验条件', 'Verify predicates'],
  grantExpired: ['已失效', 'expired'],
  liftReason: ['移除原因', 'Why it is removed'],
  networkDown: ['无法连接网关：请检查网络后重试。', 'The gateway cannot be reached: check the network and try again.'],
  beijingTime: ['时间均为北京时间。', 'Times are Beijing time.'],
  kindFilter: ['事件类型', 'Event kind'],
  kind_query: ['部门查询', "departments' requests"],
  kind_audit_review: ['审计与居民查阅', 'audit and residents\' reads'],
  kind_policy_admin: ['管理与共享流程', 'administration and sharing'],
  kind_other: ['其他', 'other'],
  anyKind: ['全部类型（含控制台自身的查阅）', 'every kind (the console\'s own reads too)'],
  today: ['今天', 'Today'],
  last7: ['近 7 天', 'Last 7 days'],
  thisMonth: ['本月', 'This month'],
  onPage: ['本页 {n} 条', '{n} on this page'],
  prevPage: ['上一页', 'Previous page'],
  exportCsv: ['导出本时段（CSV，含签名检查点）', 'Export this period (CSV, with signed checkpoints)'],
  exportNdjson: ['导出本时段（NDJSON，可离线校验）', 'Export this period (NDJSON, verifiable offline)'],
  residentBy: ['居民（以假名检索，链接中不含身份证号）', 'A resident (searched by pseudonym; the link holds no ID)'],
  clearResident: ['清除', 'Clear'],
  useKind: ['使用方式', 'Kind of use'],
  issuer: ['出具单位', 'Issued by'],
  signedThrough: ['签名检查点覆盖至第 {n} 号事件', 'Signed checkpoints cover events up to #{n}'],
  unsignedTail: ['其后 {n} 个事件尚待下一个签名检查点', 'the {n} events after it await the next signed checkpoint'],
  noCheckpoint: ['尚无签名检查点：链尾未签名', 'No signed checkpoint yet: the tail is unsigned'],
  verifiedAt: ['校验时间', 'Checked at'],
  changeReason: ['变更理由', 'Reason for the change'],
  noChangeSave: ['内容没有变化，未保存。', 'Nothing changed: nothing was saved.'],
  lift: ['移除', 'Remove'],
  liftConfirm: ['确定从拒绝名单移除 {id} 吗？相应令牌将重新被接受。', 'Remove {id} from the deny-list? Its tokens are accepted again.'],
  flag_volume_spike: ['调用量突增', 'volume spike'],
  flag_denial_burst: ['拒绝激增', 'denial burst'],
  flag_off_hours: ['非工作时间调用', 'off hours'],
  navSharing: ['共享申请', 'Sharing requests'],
  sharingIntro: ['使用部门提出共享申请；数据主管部门审核；数据所属部门答复（无条件共享的数据审核通过即授权）。期限按工作日计算。', 'A consuming department files a request; the data authority reviews it; the owning department answers (unconditional data is authorized on the review alone). Deadlines count working days.'],
  fileRequest: ['提出共享申请', 'File a sharing request'],
  useCase: ['应用场景', 'Use case'],
  validUntil: ['有效期至', 'Valid until'],
  renews: ['续期的授权编号（可选）', 'Grant renewed (optional)'],
  fileIt: ['提交申请', 'File the request'],
  filed: ['已提交', 'filed'],
  reviewedState: ['已审核', 'reviewed'],
  approved: ['已批准', 'approved'],
  refusedState: ['未批准', 'refused'],
  returned: ['已退回修改', 'returned'],
  withdrawn: ['已撤回', 'withdrawn'],
  revoked: ['已撤销授权', 'revoked'],
  requestId: ['申请编号', 'Request'],
  pairShort: ['使用 → 提供', 'Consumer → owner'],
  due: ['期限', 'Due'],
  lastStep: ['最近一步', 'Last step'],
  act: ['办理', 'Act'],
  approve: ['批准', 'approve'],
  refuse: ['不予批准', 'refuse'],
  returnIt: ['退回修改', 'return for changes'],
  reasonHint: ['不予批准或退回时必填', 'required to refuse or return'],
  submitReview: ['提交审核意见', 'Submit the review'],
  submitAnswer: ['提交答复', 'Submit the answer'],
  fieldsApproved: ['批准的字段', 'Fields approved'],
  withdraw: ['撤回申请', 'Withdraw'],
  revokeGrant: ['撤销授权', 'Revoke the grant'],
  noRequests: ['没有共享申请。', 'No sharing requests.'],
  filedOk: ['申请已提交，编号', 'Filed: request'],
  reviewDue: ['审核期限', 'review due'],
  chooseDataset: ['选择数据集', 'Choose a dataset'],
  navDataObjections: ['数据疑义', 'Data objections'],
  doIntro: ['使用部门对共享数据有疑义或发现错误时，报送数据所属部门核实；只能对本部门经查询取得的字段提出，须注明所依据的查询，不填写数据值。身份证号只向数据所属部门的数据管理员显示。', 'A consuming department that finds shared data doubtful or wrong reports it to the owner, which checks it; only for a field it was given, citing the lookup, never with a value. The ID number is shown to the owner\'s data stewards only.'],
  reportIt: ['提出疑义', 'Report'],
  what: ['疑义说明', 'What seems wrong'],
  reporter: ['提出方', 'Reported by'],
  outcome: ['核实结果', 'Outcome'],
  corrected: ['已更正', 'corrected'],
  confirmed: ['经核实无误', 'confirmed'],
  not_ours: ['非本部门数据', 'not ours'],
  note: ['说明', 'Note'],
  noDataObjections: ['没有数据疑义。', 'No data objections.'],
  reportedOk: ['疑义已报送，答复期限', 'Reported; answer due'],
  disclosureSeq: ['所依据查询的审计序号', 'Audit seq of the lookup'],
  disclosureSeqHint: ['查询应答的 X-Audit-Seq', "the lookup answer's X-Audit-Seq"],
  disclosureNode: ['节点', 'Node'],
  optional: ['可选', 'optional'],
};

const S = {
  token: sessionStorage.getItem('tongban.token') || '',
  lang: localStorage.getItem('tongban.lang') === 'en' ? 'en' : 'zh',
};

function t(key, vars) {
  const pair = L[key];
  let s = pair ? pair[S.lang === 'zh' ? 0 : 1] : key;
  // A function replacement: `$&` in a value is text, not a pattern.
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replace(`{${k}}`, () => String(v));
  return s;
}

// Builds an element: h('a', {href: '#/x', class: 'c', onclick: f}, 'text', child…).
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else if (k === 'value') el.value = v;
    else if (k === 'checked') el.checked = !!v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function claims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(Array.from(atob(part), (c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''));
    return JSON.parse(json);
  } catch {
    return null;
  }
}

function roles() {
  const c = claims(S.token);
  return c && Array.isArray(c.roles) ? c.roles : [];
}

async function api(method, path, opts = {}) {
  const headers = { Authorization: `Bearer ${S.token}`, Accept: opts.accept || 'application/json', 'Accept-Language': S.lang === 'zh' ? 'zh-CN' : 'en' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  Object.assign(headers, opts.headers || {});
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    // A sentence, not `TypeError: Failed to fetch`.
    return { status: 0, ok: false, headers: new Headers(), body: { title: t('networkDown') }, text: '' };
  }
  if (opts.raw) return resp;
  const text = await resp.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = null; }
  return { status: resp.status, ok: resp.ok, headers: resp.headers, body, text };
}

function problem(r) {
  const b = r.body || {};
  if (r.status === 0) return h('div', { class: 'notice bad', role: 'alert' }, b.title);
  return h('div', { class: 'notice bad', role: 'alert' },
    h('strong', {}, `${t('refused')} (${r.status}): `), b.title || r.text || '',
    b.detail ? h('div', {}, b.detail) : null,
    b.type ? h('div', { class: 'mono' }, b.type) : null);
}

function query() {
  const hash = location.hash || '#/';
  const i = hash.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : hash.slice(i + 1));
}

function go(route, params) {
  const qs = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v !== '' && v !== undefined && v !== null)).toString() : '';
  location.hash = `#/${route}${qs ? '?' + qs : ''}`;
}

function field(id, label, input, hint) {
  input.id = id;
  return h('div', { class: 'field' }, h('label', { for: id }, label, hint ? (S.lang === 'zh' ? `（${hint}）` : ` (${hint})`) : ''), input,
    h('p', { class: 'field-error', id: `${id}-error`, 'aria-live': 'polite' }));
}

function list(v) {
  return String(v || '').split(/[,，\s]+/).map((s) => s.trim()).filter(Boolean);
}

// A table; `classes`, if given, names a class for each column.
function table(columns, rows, classes) {
  const cls = (i) => (classes ? classes[i] || null : null);
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('thead', {}, h('tr', {}, columns.map((c, i) => h('th', { scope: 'col', class: cls(i) }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => h('td', { class: cls(i) }, c)))))));
}

// A sharing class in words (无条件共享 / 有条件共享 / 不予共享).
function sharingClass(c) {
  const key = { unconditional: 'classUnconditional', conditional: 'classConditional', none: 'classNone' }[c];
  return key ? t(key) : c;
}

function tag(decision) {
  return h('span', { class: `tag ${decision}` }, t(decision) || decision);
}

// Names for codes (departments, datasets, fields), from the sharing
// directory any staff may read; loaded once per token.
const N = { token: null, dept: {}, ds: {}, field: {}, purpose: {} };
async function loadNames() {
  if (N.token === S.token) return;
  const r = await api('GET', '/v1/sharing/directory');
  if (!r.ok) return;
  N.dept = Object.fromEntries((r.body.departments || []).map((d) => [d.id, d.name]));
  N.ds = Object.fromEntries((r.body.datasets || []).map((d) => [d.dataset, d.title]));
  N.field = Object.fromEntries((r.body.datasets || []).flatMap((d) => (d.fields || []).map((f) => [`${d.dataset}/${f.name}`, f.title])));
  N.purpose = Object.fromEntries((r.body.purposes || []).map((p) => [p.id, p.title]));
  N.token = S.token;
}
// A code shown by its name, the code on hover.
function named(code, name) {
  if (!code) return '';
  return name && name !== code ? h('span', { title: code, class: 'named' }, name) : code;
}
// A bilingual name (`民政局 Civil Affairs Bureau`) in the console's language.
function inLang(name) {
  const m = /^([^\x00-\x7f]\S*)\s+([\x00-\x7f].*)$/.exec(name || '');
  if (!m) return name;
  return S.lang === 'zh' ? m[1] : m[2];
}
const deptName = (c) => named(c, inLang(N.dept[c]));
const dsName = (c) => named(c, N.ds[c]);
const purposeName = (c) => named(c, N.purpose[c]);
const opName = (c) => named(c, L[`op_${c}`] ? t(`op_${c}`) : c);
const fieldNames = (ds, fields) => (fields || []).map((f) => N.field[`${ds}/${f}`] || f).join('；');
// `2026-12-06T19:45:39.24+08:00` read as `2026-12-06 19:45:39`.
function when(ts) {
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})/.exec(ts || '');
  return m ? `${m[1]} ${m[2]}` : (ts || '');
}
// A local day as YYYY-MM-DD.
function day(d) {
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

// ---------------------------------------------------------------- pages

const PAGES = {
  signin: { role: null, render: signin },
  audit: { role: ['privacy_officer', 'data_steward'], nav: 'navAudit', render: auditSearch },
  event: { role: 'privacy_officer', render: eventDetail },
  disclosures: { role: 'privacy_officer', nav: 'navDisclosures', render: disclosures },
  case: { role: 'privacy_officer', nav: 'navCase', render: caseMaterials },
  verify: { role: 'privacy_officer', nav: 'navVerify', render: verify },
  stats: { role: ['privacy_officer', 'data_steward'], nav: 'navStats', render: stats },
  objections: { role: 'privacy_officer', nav: 'navObjections', render: objectionQueue },
  catalog: { role: 'policy_admin', nav: 'navCatalog', render: catalog },
  grant: { role: 'policy_admin', render: grantEditor },
  history: { role: 'policy_admin', render: history },
  decide: { role: 'policy_admin', nav: 'navDecide', render: decide },
  departments: { role: 'policy_admin', nav: 'navDepartments', render: departments },
  tokens: { role: 'policy_admin', nav: 'navTokens', render: tokens },
  sharing: { role: '*', nav: 'navSharing', render: sharingRequests },
  doubts: { role: '*', nav: 'navDataObjections', render: dataObjections },
};

// Whether the signed-in token's roles open `page` (a role, or any of several).
function opens(page) {
  if (page.role === '*') return !!S.token;
  return !page.role || [].concat(page.role).some((x) => roles().includes(x));
}

// A data steward (and not an officer) sees only their own department's datasets.
const stewardOnly = () => roles().includes('data_steward') && !roles().includes('privacy_officer');

function home() {
  const r = roles();
  if (r.includes('privacy_officer') || r.includes('data_steward')) return 'audit';
  if (r.includes('policy_admin')) return 'catalog';
  if (S.token) return 'sharing';
  return 'signin';
}

function chrome(route) {
  document.title = t('title');
  document.documentElement.lang = S.lang === 'zh' ? 'zh-CN' : 'en';
  const nav = document.getElementById('nav');
  nav.replaceChildren();
  const r = roles();
  if (S.token) {
    for (const [name, page] of Object.entries(PAGES)) {
      if (page.nav && opens(page)) {
        nav.append(h('a', { href: `#/${name}`, 'aria-current': name === route ? 'page' : null }, t(page.nav)));
      }
    }
  }
  const c = S.token ? claims(S.token) : null;
  document.getElementById('who').textContent = c ? `${c.sub} · ${c.dept} · ${(c.roles || []).join(', ')}` : '';
  const lang = document.getElementById('lang');
  lang.textContent = t('lang');
  const out = document.getElementById('signout');
  out.textContent = t('signout');
  out.hidden = !S.token;
}

let rendering = 0;
// The view on the page (the route of the hash), to tell a redraw from a new view.
let shownRoute = '';
let rendered = false;

async function render() {
  // Only the latest navigation may fill the page: an earlier one that
  // answers late is dropped.
  const mine = ++rendering;
  const hash = location.hash || '';
  let route = hash.replace(/^#\//, '').split('?')[0].split('/')[0];
  let arg = hash.replace(/^#\//, '').split('?')[0].split('/').slice(1).join('/');
  try { arg = decodeURIComponent(arg); } catch { arg = ''; }
  const c = S.token ? claims(S.token) : null;
  if (!S.token || !c || (c.exp && c.exp * 1000 < Date.now())) {
    if (S.token && c && c.exp * 1000 < Date.now()) sessionStorage.setItem('tongban.notice', t('expired'));
    S.token = '';
    sessionStorage.removeItem('tongban.token');
    route = 'signin';
  }
  const page = PAGES[route];
  if (!page || !opens(page)) {
    const to = home();
    if (route !== to) { go(to); return; }
  }
  chrome(route);
  const main = document.getElementById('main');
  // A view drawn again (after a save, an answer) stays as it was, inert,
  // under a line saying it loads: loading never blanks a form. Another view
  // starts from that line alone.
  main.setAttribute('aria-busy', 'true');
  if (main.firstChild && route === shownRoute) {
    for (const el of main.children) el.inert = true;
    main.prepend(h('p', { class: 'loading', role: 'status' }, t('loading')));
  } else {
    main.replaceChildren(h('p', {}, t('loading')));
  }
  shownRoute = route;
  try {
    if (S.token) await loadNames();
    const content = await (PAGES[route] || PAGES.signin).render(arg);
    if (mine !== rendering) return;
    main.replaceChildren(...[content].flat(Infinity).filter((x) => x !== null && x !== undefined && x !== false));
    main.removeAttribute('aria-busy');
    // Each view names itself in the tab; one reached by navigating takes
    // the focus at its heading (a fresh load starts at the skip link).
    const heading = main.querySelector('h1');
    if (heading) {
      document.title = `${heading.textContent} · ${t('title')}`;
      heading.setAttribute('tabindex', '-1');
      if (rendered) heading.focus({ preventScroll: true });
    }
    rendered = true;
  } catch (e) {
    if (mine !== rendering) return;
    main.removeAttribute('aria-busy');
    main.replaceChildren(h('div', { class: 'notice bad', role: 'alert' }, String(e)));
  }
}

function signin() {
  const notice = sessionStorage.getItem('tongban.notice');
  sessionStorage.removeItem('tongban.notice');
  const area = h('textarea', { name: 'token', rows: 5, autocomplete: 'off', spellcheck: 'false' });
  const file = h('input', { type: 'file', accept: '.jwt,.txt,text/plain' });
  const msg = h('p', { class: 'error', role: 'alert' }, notice || '');
  file.addEventListener('change', async () => {
    if (file.files[0]) area.value = (await file.files[0].text()).trim();
  });
  const form = h('form', { class: 'panel', onsubmit: (ev) => {
    ev.preventDefault();
    const token = area.value.trim();
    const c = claims(token);
    if (!c) { msg.textContent = t('badToken'); return; }
    if (c.exp && c.exp * 1000 < Date.now()) { msg.textContent = t('expired'); return; }
    const r = Array.isArray(c.roles) ? c.roles : [];
    if (r.length === 0) { msg.textContent = t('noRole'); return; }
    S.token = token;
    sessionStorage.setItem('tongban.token', token);
    go(home());
  } },
  field('token', t('token'), area),
  field('token-file', t('tokenFile'), file),
  h('div', { class: 'actions' }, h('button', { type: 'submit' }, t('signin'))), msg);
  return [h('h1', {}, t('signin')), h('p', {}, t('signinIntro')), form];
}

const FILTERS = ['consumer', 'subject', 'dataset', 'purpose', 'case_ref', 'decision', 'kind', 'from', 'to', 'limit'];
const KINDS = ['query', 'audit_review', 'policy_admin', 'other'];

// A code typed as its name (民政局 → minzheng) is searched by its code.
function codeOf(map, typed) {
  const v = typed.trim();
  if (!v || map[v]) return v;
  const exact = Object.entries(map).find(([, name]) => name === v || inLang(name) === v);
  if (exact) return exact[0];
  const some = Object.entries(map).filter(([, name]) => (name || '').includes(v));
  return some.length === 1 ? some[0][0] : v;
}

// Downloads what `path` answers as the file `name`; a refusal is shown in `status`.
async function download(path, accept, name, status) {
  const resp = await api('GET', path, { raw: true, accept });
  if (!resp.ok) {
    // A network failure comes back as a problem already.
    if (resp.status === 0) { status.replaceChildren(problem(resp)); return; }
    const text = await resp.text();
    let body = null;
    try { body = JSON.parse(text); } catch { body = null; }
    status.replaceChildren(problem({ status: resp.status, body, text }));
    return;
  }
  const url = URL.createObjectURL(await resp.blob());
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// Downloads the signed export of a period, named by the period.
function exportPeriod(from, to, format, status) {
  // A copy to read: retention waits for the archive export made for it.
  const params = new URLSearchParams({ format, archive: 'false' });
  if (from) params.set('from', from);
  if (to) params.set('to', to);
  const ext = format === 'csv' ? 'csv' : 'ndjson';
  return download(`/v1/audit/export?${params}`, format === 'csv' ? 'text/csv' : 'application/x-ndjson', `audit-${from || 'start'}-${to || 'now'}.${ext}`, status);
}

async function auditSearch() {
  const q = query();
  // The console's own reads stay out unless asked for.
  if (!q.has('kind')) q.set('kind', 'query');
  const inputs = {};
  for (const f of FILTERS) {
    if (f === 'decision') {
      inputs[f] = h('select', { name: f }, ['', 'allow', 'deny', 'error'].map((d) => h('option', { value: d }, d ? t(d) : t('any'))));
    } else if (f === 'kind') {
      inputs[f] = h('select', { name: f }, [...KINDS.map((k) => h('option', { value: k }, t(`kind_${k}`))), h('option', { value: 'all' }, t('anyKind'))]);
    } else {
      const type = f === 'limit' ? 'number' : f === 'from' || f === 'to' ? 'date' : 'text';
      const list = f === 'consumer' ? 'dl-dept' : f === 'dataset' ? 'dl-ds' : f === 'purpose' ? 'dl-purpose' : null;
      inputs[f] = h('input', { name: f, type, list, min: f === 'limit' ? 1 : null, max: f === 'limit' ? 1000 : null, autocomplete: 'off' });
    }
    inputs[f].value = q.get(f) || (f === 'limit' ? '50' : '');
  }
  const resident = h('input', { name: 'resident', autocomplete: 'off', maxlength: '18' });
  const lists = [h('datalist', { id: 'dl-dept' }, Object.entries(N.dept).map(([c, n]) => h('option', { value: n, label: c }))),
    h('datalist', { id: 'dl-ds' }, Object.entries(N.ds).map(([c, n]) => h('option', { value: n, label: c }))),
    h('datalist', { id: 'dl-purpose' }, Object.entries(N.purpose).map(([c, n]) => h('option', { value: n, label: c })))];
  const status = h('div', { 'aria-live': 'polite' });
  const search = async (extra) => {
    const params = {};
    for (const f of FILTERS) params[f] = inputs[f].value.trim();
    params.consumer = codeOf(N.dept, params.consumer);
    params.dataset = codeOf(N.ds, params.dataset);
    params.purpose = codeOf(N.purpose, params.purpose);
    Object.assign(params, extra || {});
    // The ID is sent once, by fetch, for its pseudonym; only that goes in the address.
    if (resident.value.trim()) {
      const r = await api('GET', `/v1/audit/events?${new URLSearchParams({ resident: resident.value.trim(), limit: '1' })}`);
      if (!r.ok) { status.replaceChildren(problem(r)); return; }
      params.pseudonym = r.body.pseudonym;
    } else if (q.get('pseudonym')) {
      params.pseudonym = q.get('pseudonym');
    }
    go('audit', params);
  };
  const quick = (label, from, to) => h('button', { type: 'button', class: 'secondary', onclick: () => { inputs.from.value = from; inputs.to.value = to; search(); } }, label);
  const now = new Date();
  const ranges = h('div', { class: 'quick' },
    quick(t('today'), day(now), day(now)),
    quick(t('last7'), day(new Date(now.getTime() - 6 * 86400000)), day(now)),
    quick(t('thisMonth'), day(new Date(now.getFullYear(), now.getMonth(), 1)), day(now)));
  const form = h('form', { class: 'filters', role: 'search', onsubmit: (ev) => { ev.preventDefault(); search(); } },
    lists,
    q.get('pseudonym')
      ? h('div', { class: 'field' }, h('span', { class: 'label' }, t('residentBy')), h('code', {}, `${q.get('pseudonym').slice(0, 12)}…`), ' ',
        h('button', { type: 'button', class: 'link', onclick: () => { const p = Object.fromEntries(q.entries()); delete p.pseudonym; delete p.cursor; delete p.back; go('audit', p); } }, t('clearResident')))
      : field('q-resident', t('resident'), resident),
    FILTERS.map((f) => field(`q-${f}`, t(f === 'limit' ? 'limit' : f === 'kind' ? 'kindFilter' : f), inputs[f])),
    h('div', {}, h('button', { type: 'submit' }, t('search'))), ranges);
  const out = [h('h1', {}, t('navAudit')), stewardOnly() ? h('p', { class: 'notice' }, t('stewardNote')) : null, form,
    h('p', { class: 'noprint' }, t('shareHint'), ' ', t('beijingTime')), status];
  const params = new URLSearchParams();
  for (const f of [...FILTERS, 'pseudonym', 'cursor']) if (q.get(f) && !(f === 'kind' && q.get(f) === 'all')) params.set(f, q.get(f));
  const r = await api('GET', `/v1/audit/events?${params}`);
  if (!r.ok) return [...out, problem(r)];
  const events = r.body.events || [];
  out.push(h('p', { id: 'count' }, t('onPage', { n: events.length })));
  out.push(events.length === 0 ? h('p', {}, t('noEvents')) : table(
    [t('seq'), t('time'), t('consumer'), t('subject'), t('operation'), t('dataset'), t('purpose'), t('decision'), t('status')],
    events.map((e) => [stewardOnly() ? String(e.seq) : h('a', { href: eventHref(e.seq, e.node) }, String(e.seq)), when(e.time), deptName(e.consumer), e.subject || '', opName(e.operation), dsName(e.dataset), purposeName(e.purpose), tag(e.decision), String(e.status)])));
  // Pages: the cursors walked so far ride in the address, so Back works too.
  const back = (q.get('back') || '').split(',').filter(Boolean);
  const nav = h('div', { class: 'actions' });
  if (q.get('cursor')) {
    const prev = Object.fromEntries(q.entries());
    const last = back.pop();
    if (last && last !== '-') prev.cursor = last; else delete prev.cursor;
    prev.back = back.join(',');
    nav.append(h('a', { class: 'button secondary', href: `#/audit?${new URLSearchParams(prev)}` }, t('prevPage')));
  }
  if (r.body.next_cursor) {
    const next = Object.fromEntries(q.entries());
    next.back = [...(q.get('back') || '').split(',').filter(Boolean), q.get('cursor') || '-'].join(',');
    next.cursor = r.body.next_cursor;
    nav.append(h('a', { class: 'button secondary', href: `#/audit?${new URLSearchParams(next)}` }, t('next')));
  }
  const from = q.get('from') || '';
  const to = q.get('to') || '';
  if (!stewardOnly()) {
    nav.append(h('button', { type: 'button', class: 'secondary', onclick: () => exportPeriod(from, to, 'csv', status) }, t('exportCsv')),
      h('button', { type: 'button', class: 'secondary', onclick: () => exportPeriod(from, to, 'ndjson', status) }, t('exportNdjson')));
  }
  out.push(nav);
  return out;
}

// A link to one event of one node's chain (in cluster mode seq alone is ambiguous).
function eventHref(seq, node) {
  return `#/event/${seq}${node ? '?' + new URLSearchParams({ node }) : ''}`;
}

async function eventDetail(seq) {
  const node = query().get('node');
  const r = await api('GET', `/v1/audit/events/${encodeURIComponent(seq)}${node ? '?' + new URLSearchParams({ node }) : ''}`);
  if (!r.ok) return [h('h1', {}, `${t('event')} ${seq}`), problem(r)];
  const e = r.body;
  const rows = [
    [t('seq'), String(e.seq)], [t('time'), e.time], ['node', e.node], ['request_id', e.request_id],
    [t('kind'), e.kind], [t('operation'), e.operation], [t('consumer'), e.consumer], [t('subject'), e.subject],
    [t('roles'), (e.roles || []).join(', ')], [t('dataset'), e.dataset], [t('resident'), e.resident],
    [t('purpose'), e.purpose], [t('caseRef'), e.case_ref], [t('fields'), (e.fields || []).join(', ')],
    [t('decision'), tag(e.decision)], [t('reason'), e.reason],
    [t('grant'), e.grant ? `${e.grant.id} @ ${t('version')} ${e.grant.version}` : ''],
    [t('policyVersion'), e.policy_version], [t('status'), String(e.status)], ['latency_us', String(e.latency_us)],
    ['cert_fingerprint', e.cert_fingerprint], ['detail', e.detail],
    [t('hash'), h('code', {}, e.hash)], [t('prevHash'), h('code', {}, e.prev_hash)],
  ];
  return [
    h('h1', {}, `${t('event')} ${e.seq}`),
    h('dl', { class: 'kv' }, rows.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])),
    e.seq > 1 ? h('div', { class: 'actions' }, h('a', { class: 'button secondary', href: eventHref(e.seq - 1, node) }, t('previous'))) : null,
  ];
}

// The ID a disclosure report is for: kept in this page's memory only,
// never in the address (and so never in the history).
let reportFor = '';

async function disclosures() {
  const input = h('input', { name: 'resident', autocomplete: 'off', maxlength: '18' });
  const form = h('form', { class: 'filters', onsubmit: (ev) => {
    ev.preventDefault();
    reportFor = input.value.trim();
    input.value = '';
    render();
  } },
  field('d-resident', t('resident'), input), h('div', {}, h('button', { type: 'submit' }, t('show'))));
  const out = [h('h1', {}, t('disclosuresFor')), h('p', { class: 'noprint' }, t('disclosuresIntro')), form];
  const resident = reportFor;
  if (!resident) return out;
  const path = `/v1/audit/residents/${encodeURIComponent(resident)}/disclosures`;
  const r = await api('GET', path);
  if (!r.ok) return [...out, problem(r)];
  const b = r.body;
  const status = h('div', { 'aria-live': 'polite' });
  // The file is named by the masked ID the gateway shows, never the full one.
  const csv = () => download(`${path}?format=csv`, 'text/csv', `disclosures-${b.resident}.csv`, status);
  out.push(
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => window.print() }, t('print')),
      h('button', { type: 'button', class: 'secondary', onclick: csv }, t('csv'))),
    status,
    h('div', { class: 'report' },
      h('p', { class: 'printonly report-head' }, t('disclosuresFor')),
      h('dl', { class: 'kv' }, h('dt', {}, t('resident')), h('dd', {}, b.resident), h('dt', {}, t('count')), h('dd', {}, String(b.count)),
        h('dt', {}, t('generated')), h('dd', {}, `${when(b.generated_at)}（${t('beijingTime')}）`),
        h('dt', {}, t('issuer')), h('dd', { id: 'issuer' }, inLang(b.issued_by) || '')),
      b.disclosures.length === 0 ? h('p', {}, t('noDisclosures')) : table(
        [t('time'), t('consumer'), t('purpose'), t('caseRef'), t('dataset'), t('fields'), t('useKind'), t('subject'), t('grant'), t('seq')],
        b.disclosures.map((d) => [when(d.time), named(d.consumer, inLang(d.consumer_name)), named(d.purpose, d.purpose_title), d.case_ref || '',
          named(d.dataset, d.dataset_title), (d.fields || []).map((f) => N.field[`${d.dataset}/${f.name}`] || f.title || f.name).join('；'),
          h('span', { class: `use ${d.operation}` }, S.lang === 'zh' ? d.use_zh : d.use_en), d.subject || '', d.grant || '',
          h('a', { href: eventHref(d.seq, d.node) }, String(d.seq))]),
        // The person, grant and sequence are for officers: the printed report is the resident's.
        [null, null, null, null, null, null, null, 'officer', 'officer', 'officer'])));
  return out;
}

// Residents' objections: the queue, each with its answer form.
async function objectionQueue() {
  const q = query();
  const state = h('select', { id: 'o-state', name: 'state' },
    ['', 'open', 'overdue', 'answered', 'closed'].map((s) => h('option', { value: s, selected: (q.get('state') || '') === s }, s ? (t(s) || s) : '—')));
  const form = h('form', { class: 'filters', onsubmit: (ev) => { ev.preventDefault(); go('objections', state.value ? { state: state.value } : {}); } },
    field('o-state', t('objState'), state), h('div', {}, h('button', { type: 'submit' }, t('search'))));
  const out = [h('h1', {}, t('navObjections')), h('p', {}, t('objectionsIntro')), form];
  const r = await api('GET', `/v1/audit/objections${q.get('state') ? `?state=${encodeURIComponent(q.get('state'))}` : ''}`);
  if (!r.ok) return [...out, problem(r)];
  const list = r.body.objections || [];
  if (list.length === 0) return [...out, h('p', {}, t('objNone'))];
  const answer = (o) => {
    if (o.state === 'closed') return o.reply ? h('span', {}, o.reply.text) : '';
    const text = h('textarea', { 'aria-label': `${t('objReply')} ${o.id}`, maxlength: '500', rows: 3 });
    const msg = h('div');
    const send = async (close) => {
      const a = await api('POST', `/v1/audit/objections/${encodeURIComponent(o.id)}/reply`, { body: { reply: text.value, close } });
      // The same address: drawn again in place.
      if (a.ok) render(); else msg.replaceChildren(problem(a));
    };
    return h('div', {}, o.reply ? h('p', {}, o.reply.text) : null, text,
      h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => send(false) }, t('objSend')),
        h('button', { type: 'button', class: 'secondary', onclick: () => send(true) }, t('objClose'))), msg);
  };
  out.push(table([t('objState'), t('objDue'), t('objUse'), t('objText'), t('objReply')], list.map((o) => {
    const d = o.disclosure || {};
    return [h('span', {}, t(o.state) || o.state, o.overdue ? h('strong', { class: 'bad' }, ` ${t('objOverdue')}`) : null),
      o.due,
      h('span', {}, d.department_name || d.department || '', h('br'), d.purpose_title || d.purpose || '', h('br'),
        h('a', { href: eventHref(o.seq, o.node) }, `#${o.seq}`)),
      o.text, answer(o)];
  })));
  return out;
}

async function caseMaterials() {
  const q = query();
  const consumer = h('input', { name: 'consumer', autocomplete: 'off', value: q.get('consumer') || '' });
  const caseRef = h('input', { name: 'case_ref', autocomplete: 'off', value: q.get('case_ref') || '' });
  const form = h('form', { class: 'filters', onsubmit: (ev) => {
    ev.preventDefault();
    go('case', { consumer: consumer.value.trim(), case_ref: caseRef.value.trim() });
  } },
  field('c-consumer', t('consumer'), consumer), field('c-case', t('case_ref'), caseRef),
  h('div', {}, h('button', { type: 'submit' }, t('show'))));
  const out = [h('h1', {}, t('caseFor')), h('p', { class: 'noprint' }, t('caseIntro')), form];
  if (!q.get('case_ref') || !q.get('consumer')) return out;
  const params = new URLSearchParams({ case_ref: q.get('case_ref'), consumer: q.get('consumer') });
  const r = await api('GET', `/v1/cases?${params}`);
  if (!r.ok) return [...out, problem(r)];
  const b = r.body;
  out.push(
    h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => window.print() }, t('print'))),
    h('dl', { class: 'kv' }, h('dt', {}, t('consumer')), h('dd', {}, b.consumer_name || b.consumer),
      h('dt', {}, t('case_ref')), h('dd', {}, b.case_ref), h('dt', {}, t('count')), h('dd', {}, String(b.count)),
      h('dt', {}, t('generated')), h('dd', {}, b.generated_at)),
    b.materials.length === 0 ? h('p', {}, t('noMaterials')) : table(
      [t('time'), t('ownerDept'), t('dataset'), t('fields'), t('subject'), t('purpose'), t('grant'), t('signed'), t('seq')],
      b.materials.map((m) => [m.time, m.owner_name || m.owner, m.dataset_title || m.dataset,
        (m.fields || []).map((f) => f.title || f.name).join('；'), m.subject || '', m.purpose || '', m.grant || '',
        m.signed ? '✓' : '', h('a', { href: eventHref(m.seq, m.node) }, String(m.seq))])));
  return out;
}

async function verify() {
  const out = [h('h1', {}, t('navVerify')), h('p', {}, t('verifyIntro'))];
  const result = h('div', { 'aria-live': 'polite' });
  const button = h('button', { type: 'button', onclick: async () => {
    button.disabled = true;
    result.replaceChildren(h('p', {}, t('loading')));
    const r = await api('GET', '/v1/audit/verify');
    button.disabled = false;
    if (!r.ok) { result.replaceChildren(problem(r)); return; }
    const b = r.body;
    const ok = b.verdict === 'intact';
    result.replaceChildren(
      h('div', { class: `verdict ${ok ? 'ok' : 'bad'}`, role: 'status', id: 'verdict' }, ok ? t('intact') : t('broken')),
      h('dl', { class: 'kv' },
        h('dt', {}, t('checked')), h('dd', {}, String(b.checked)),
        h('dt', {}, t('verifiedAt')), h('dd', {}, `${day(new Date())} ${new Date().toTimeString().slice(0, 8)}`),
        h('dt', {}, t('checkpoints')), h('dd', { id: 'coverage' }, String(b.checkpoints_checked), ' · ',
          b.last_checkpoint ? [t('signedThrough', { n: b.last_checkpoint }), b.head_seq > b.last_checkpoint ? `；${t('unsignedTail', { n: b.head_seq - b.last_checkpoint })}` : '']
            : t('noCheckpoint')),
        h('dt', {}, t('head')), h('dd', {}, `${b.head_seq} `, h('code', {}, b.head_hash)),
        h('dt', {}, t('epochs')), h('dd', {}, (b.epochs || []).map((e) => `${e.suite} ${e.first_seq}–${e.last_seq}`).join('；')),
        b.broken ? [h('dt', {}, t('firstBroken')), h('dd', { class: 'error' }, h('a', { href: `#/event/${b.broken.seq}` }, `#${b.broken.seq}`), ` ${b.broken.problem}`)] : null));
  } }, t('verifyRun'));
  out.push(h('div', { class: 'actions' }, button), result);
  return out;
}

// A horizontal bar for a share of the largest value.
function bar(share) {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 200 12');
  svg.setAttribute('width', '200');
  svg.setAttribute('height', '12');
  svg.setAttribute('aria-hidden', 'true');
  const rect = document.createElementNS(NS, 'rect');
  rect.setAttribute('width', String(Math.max(1, Math.round(share * 200))));
  rect.setAttribute('height', '12');
  rect.setAttribute('fill', '#0b4f8a');
  svg.append(rect);
  return svg;
}

function chart(days) {
  const NS = 'http://www.w3.org/2000/svg';
  const s = (tagName, attrs, text) => {
    const el = document.createElementNS(NS, tagName);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const names = Object.keys(days).sort();
  const W = 900, H = 240, pad = 36;
  const max = Math.max(1, ...names.map((d) => days[d].total));
  const bw = Math.max(4, Math.min(60, (W - pad * 2) / Math.max(1, names.length) - 8));
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${t('total')} / ${t('day')}` });
  svg.append(s('line', { x1: pad, y1: H - pad, x2: W - pad, y2: H - pad, stroke: '#4a4a4a' }));
  svg.append(s('text', { x: 4, y: pad, 'font-size': 12 }, String(max)));
  const colors = { allow: '#17622b', deny: '#a31515', error: '#7a4b00' };
  names.forEach((d, i) => {
    const x = pad + 4 + i * (bw + 8);
    let y = H - pad;
    for (const k of ['allow', 'deny', 'error']) {
      const n = (days[d].by_decision || {})[k] || 0;
      if (!n) continue;
      const hh = (n / max) * (H - pad * 2);
      y -= hh;
      const rect = s('rect', { x, y, width: bw, height: hh, fill: colors[k] });
      rect.append(s('title', {}, `${d} ${t(k)}: ${n}`));
      svg.append(rect);
    }
    svg.append(s('text', { x, y: H - pad + 14, 'font-size': 11 }, d.slice(5)));
  });
  const legend = h('p', { class: 'legend' }, Object.entries(colors).map(([k, c]) => h('span', {}, h('i', { style: null, class: `sw-${k}` }), t(k))));
  legend.querySelectorAll('i').forEach((i, n) => { i.style.background = Object.values(colors)[n]; });
  return [svg, legend];
}

async function stats() {
  const q = query();
  const from = h('input', { name: 'from', placeholder: 'YYYY-MM-DD', value: q.get('from') || '' });
  const to = h('input', { name: 'to', placeholder: 'YYYY-MM-DD', value: q.get('to') || '' });
  const form = h('form', { class: 'filters', onsubmit: (ev) => { ev.preventDefault(); go('stats', { from: from.value.trim(), to: to.value.trim() }); } },
    field('s-from', t('from'), from), field('s-to', t('to'), to), h('div', {}, h('button', { type: 'submit' }, t('show2'))));
  const out = [h('h1', {}, t('navStats')), stewardOnly() ? h('p', { class: 'notice' }, t('stewardNote')) : null, h('p', {}, t('statsIntro')), form];
  const params = new URLSearchParams();
  if (q.get('from')) params.set('from', q.get('from'));
  if (q.get('to')) params.set('to', q.get('to'));
  const r = await api('GET', `/v1/audit/stats?${params}`);
  if (!r.ok) return [...out, problem(r)];
  const days = r.body.days || {};
  out.push(...chart(days));
  // The chart's figures as a table, for a screen reader or a copy.
  out.push(h('details', { class: 'chart-table' }, h('summary', {}, t('chartAsTable')),
    table([t('day'), t('allow'), t('deny'), t('error'), t('total')], Object.keys(days).sort().map((d) => {
      const by = days[d].by_decision || {};
      return [d, String(by.allow || 0), String(by.deny || 0), String(by.error || 0), String(days[d].total)];
    }))));
  const sum = (key) => {
    const acc = {};
    for (const d of Object.values(days)) for (const [k, n] of Object.entries(d[key] || {})) acc[k] = (acc[k] || 0) + n;
    return Object.entries(acc).sort((a, b) => b[1] - a[1]);
  };
  const bars = (rows) => {
    const max = Math.max(1, ...rows.map(([, n]) => n));
    return table(['', t('total'), ''], rows.map(([k, n]) => [k, String(n), bar(n / max)]));
  };
  out.push(h('div', { class: 'grid2' },
    h('section', {}, h('h2', {}, t('byConsumer')), bars(sum('by_consumer'))),
    h('section', {}, h('h2', {}, t('byPurpose')), bars(sum('by_purpose')))));
  const ev = await api('GET', '/v1/audit/evaluation');
  out.push(h('h2', {}, t('evaluation')), h('p', {}, t('evaluationIntro')));
  if (!ev.ok) out.push(problem(ev));
  else {
    const rows = ev.body.rows || [];
    const max = Math.max(1, ...rows.map((x) => x.materials + x.verify_answers));
    out.push(rows.length === 0 ? h('p', {}, t('noFlags')) : table(
      [t('month'), t('pair'), t('casesServed'), t('materials'), t('verifyAnswers'), t('withoutCase'), ''],
      rows.map((x) => [x.month, `${x.consumer_name || x.consumer} → ${x.owner_name || x.owner}`, String(x.cases),
        String(x.materials), String(x.verify_answers), String(x.without_case), bar((x.materials + x.verify_answers) / max)])));
  }
  out.push(h('h2', {}, t('flags')));
  const flags = r.body.flags || [];
  out.push(flags.length === 0 ? h('p', {}, t('noFlags')) : table([t('day'), t('kind'), t('consumer'), t('subject'), 'detail', t('events'), t('review')],
    flags.map((f) => [f.day, named(f.kind, t(`flag_${f.kind}`)), deptName(f.consumer), f.subject || '', f.detail || '',
      h('span', {}, (f.refs || (f.events || []).map((seq) => ({ seq }))).slice(0, 20).map((e) => [h('a', { href: eventHref(e.seq, e.node) }, `#${e.seq}`), ' '])),
      reviewCell(f)])));
  return out;
}

// A flag's review mark, or the form that makes one (audited by the gateway).
function reviewCell(f) {
  const cell = h('div', { class: 'review' });
  const shown = (rv) => {
    cell.replaceChildren(h('strong', {}, `${t('reviewed')} `), h('span', {}, `${rv.by} · ${rv.at}`), h('div', {}, rv.note));
  };
  if (f.review) { shown(f.review); return cell; }
  if (!roles().includes('privacy_officer')) return cell;
  const note = h('input', { 'aria-label': t('reviewNote'), placeholder: t('reviewNote'), maxlength: '500' });
  const msg = h('div');
  const form = h('form', { class: 'inline' }, note, h('button', { type: 'submit' }, t('markReviewed')), msg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const r = await api('POST', `/v1/audit/flags/${encodeURIComponent(f.id)}/review`, { body: { note: note.value } });
    if (r.ok) shown(r.body.review); else msg.replaceChildren(problem(r));
  });
  cell.append(form);
  return cell;
}

async function catalog() {
  const [ds, gs] = await Promise.all([api('GET', '/v1/admin/datasets'), api('GET', '/v1/admin/grants')]);
  const out = [h('h1', {}, t('navCatalog'))];
  if (!ds.ok) return [...out, problem(ds)];
  if (!gs.ok) return [...out, problem(gs)];
  out.push(h('h2', {}, t('datasets')), table([t('dataset'), t('titleField'), t('owner'), t('class'), t('fields')],
    ds.body.datasets.map((d) => [h('code', {}, d.id), d.title, deptName(d.owner), sharingClass(d.class), String(d.fields)])));
  const details = await Promise.all(gs.body.grants.map((g) => api('GET', `/v1/admin/grants/${encodeURIComponent(g.id)}`)));
  out.push(h('h2', {}, t('grants')), table([t('grant'), t('consumer'), t('roles'), t('purposes'), t('operations'), t('fields'), t('version'), ''],
    details.filter((r) => r.ok).map((r) => {
      const g = r.body.grant;
      const until = (g.conditions || {}).valid_until;
      const ended = until && until < day(new Date());
      return [h('span', {}, g.title, ended ? h('strong', { class: 'tag deny', title: until }, ` ${t('grantExpired')}`) : null, h('br'), h('code', {}, g.id)),
        deptName(g.consumer), g.roles.join(', '), g.purposes.map((p) => N.purpose[p] || p).join('、'), g.operations.join(', '),
        h('span', {}, g.access.map((a) => h('div', {}, h('code', {}, a.dataset), ': ', a.fields.join(', '),
          a.verify_only && a.verify_only.length ? ` (${t('verifyOnly')}: ${a.verify_only.join(', ')})` : ''))),
        String(g.version || 1),
        h('span', {}, h('a', { href: `#/grant/${encodeURIComponent(g.id)}` }, t('edit')), ' · ', h('a', { href: `#/history?id=${encodeURIComponent(g.id)}` }, t('history')))];
    })));
  return out;
}

// Which form field an error message from the gateway belongs to.
function fieldOf(message, grant) {
  const m = /field "([^"]+)" is not in dataset ([\w.]+)/.exec(message);
  if (m) {
    const i = grant.access.findIndex((a) => a.dataset === m[2]);
    return i >= 0 ? `g-fields-${i}` : 'g-general';
  }
  const rules = [[/quota/i, 'g-quota'], [/verify.only/i, 'g-verify-0'], [/purpose/i, 'g-purposes'], [/role/i, 'g-roles'],
    [/operation/i, 'g-operations'], [/consumer|department/i, 'g-consumer'], [/title/i, 'g-title'], [/basis/i, 'g-basis'], [/field/i, 'g-fields-0']];
  for (const [re, id] of rules) if (re.test(message)) return id;
  return 'g-general';
}

async function grantEditor(id) {
  const r = await api('GET', `/v1/admin/grants/${encodeURIComponent(id)}`);
  if (!r.ok) return [h('h1', {}, `${t('editGrant')} ${id}`), problem(r)];
  const original = r.body.grant;
  let etag = r.headers.get('ETag') || r.body.etag;
  const f = {
    title: h('input', { value: original.title || '' }),
    consumer: h('input', { value: original.consumer || '' }),
    roles: h('input', { value: (original.roles || []).join(', ') }),
    purposes: h('input', { value: (original.purposes || []).join(', ') }),
    basis: h('textarea', { rows: 3 }),
    quota: h('input', { value: (original.conditions || {}).quota || '', placeholder: '120/min' }),
    caseRef: h('input', { type: 'checkbox', checked: !!(original.conditions || {}).case_ref_required }),
    reason: h('input', { maxlength: '500', 'aria-required': 'true' }),
    validFrom: h('input', { type: 'date', value: (original.conditions || {}).valid_from || '' }),
    validUntil: h('input', { type: 'date', value: (original.conditions || {}).valid_until || '' }),
    casePattern: h('input', { value: (original.conditions || {}).case_ref_pattern || '', placeholder: 'MZ-\\d{4}-\\d{6}' }),
    batchLimit: h('input', { type: 'number', min: 1, value: (original.conditions || {}).batch_limit || '' }),
  };
  f.basis.value = original.basis || '';
  const ops = ['lookup', 'verify', 'batch'].map((op) => h('label', {}, h('input', { type: 'checkbox', name: 'op', value: op, checked: (original.operations || []).includes(op) }), ` ${op}`));
  // Each dataset's fields as a checklist with their titles (all of the
  // catalog's, the granted ones ticked); masks and verify-only fields and
  // predicates beside them.
  const access = original.access.map((a, i) => {
    const known = Object.keys(N.field).filter((k) => k.startsWith(`${a.dataset}/`)).map((k) => k.slice(a.dataset.length + 1));
    const all = [...new Set([...known, ...a.fields])];
    const boxes = all.map((name) => h('label', { class: 'check', title: name },
      h('input', { type: 'checkbox', value: name, checked: a.fields.includes(name) }), ` ${N.field[`${a.dataset}/${name}`] || name}`));
    return {
      fields: h('input', { value: a.fields.join(', ') }),
      boxes,
      verify: h('input', { value: (a.verify_only || []).join(', ') }),
      masked: h('input', { value: Object.entries(a.masked || {}).map(([k, v]) => `${k}=${v}`).join(', '), placeholder: 'id_number=id_number' }),
      predicates: h('textarea', { rows: 2 }),
      dataset: a.dataset,
      i,
    };
  });
  access.forEach((a) => {
    a.predicates.value = JSON.stringify(original.access[a.i].verify_predicates || []);
    // The checklist and the text say the same: either may be edited.
    a.boxes.forEach((b) => b.firstChild.addEventListener('change', () => {
      a.fields.value = a.boxes.map((x) => x.firstChild).filter((x) => x.checked).map((x) => x.value).join(', ');
    }));
  });
  const general = h('div', { id: 'g-general-error', class: 'field-error', 'aria-live': 'polite' });
  const result = h('div', { 'aria-live': 'polite', id: 'result' });
  const build = () => {
    const g = structuredClone(original);
    delete g.version;
    g.title = f.title.value.trim();
    g.consumer = f.consumer.value.trim();
    g.roles = list(f.roles.value);
    g.purposes = list(f.purposes.value);
    g.basis = f.basis.value.trim();
    g.operations = ops.map((l) => l.querySelector('input')).filter((c) => c.checked).map((c) => c.value);
    g.conditions = g.conditions || {};
    if (f.quota.value.trim()) g.conditions.quota = f.quota.value.trim(); else delete g.conditions.quota;
    g.conditions.case_ref_required = f.caseRef.checked;
    const cond = (key, value) => { if (value) g.conditions[key] = value; else delete g.conditions[key]; };
    cond('valid_from', f.validFrom.value);
    cond('valid_until', f.validUntil.value);
    cond('case_ref_pattern', f.casePattern.value.trim());
    cond('batch_limit', f.batchLimit.value ? Number(f.batchLimit.value) : null);
    access.forEach((a) => {
      const x = g.access[a.i];
      x.fields = list(a.fields.value);
      x.verify_only = list(a.verify.value);
      x.masked = Object.fromEntries(list(a.masked.value).map((m) => m.split('=')).filter((kv) => kv.length === 2).map(([k, v]) => [k.trim(), v.trim()]));
      try { x.verify_predicates = JSON.parse(a.predicates.value || '[]'); } catch { x.verify_predicates = a.predicates.value; }
    });
    return g;
  };
  const clear = () => document.querySelectorAll('.field-error').forEach((e) => { e.textContent = ''; });
  const showErrors = (errors, g) => {
    clear();
    for (const e of errors || []) {
      const message = e.message || e.detail || String(e);
      const target = document.getElementById(`${fieldOf(message, g)}-error`) || general;
      target.textContent = (target.textContent ? target.textContent + '；' : '') + message;
      const input = document.getElementById(fieldOf(message, g));
      if (input) input.setAttribute('aria-invalid', 'true');
    }
  };
  const changes = (lines) => lines && lines.length
    ? [h('h2', {}, t('accessChanges')), h('ul', { id: 'access-changes' }, lines.map((l) => h('li', { class: 'mono' }, l)))]
    : [h('p', {}, t('noChange'))];
  const preview = async () => {
    const g = build();
    const v = await api('POST', '/v1/admin/validate', { body: { changes: [{ action: 'put_grant', grant: g }] } });
    if (!v.ok) { result.replaceChildren(problem(v)); return; }
    if (!v.body.valid) {
      showErrors(v.body.errors.flatMap((e) => e.errors || [{ message: e.detail }]), g);
      result.replaceChildren(h('div', { class: 'notice bad', role: 'alert' }, t('invalid')));
      return;
    }
    clear();
    result.replaceChildren(h('div', { class: 'notice ok' }, ...changes(v.body.access_changes)));
  };
  const save = async () => {
    const g = build();
    // The console always says why (the API leaves it optional for scripts).
    if (!f.reason.value.trim()) {
      document.getElementById('g-reason-error').textContent = `${t('changeReason')}: ${t('required')}`;
      f.reason.focus();
      return;
    }
    g.reason = f.reason.value.trim();
    const s = await api('PUT', `/v1/admin/grants/${encodeURIComponent(id)}`, { body: g, headers: { 'If-Match': etag } });
    if (s.status === 409 && s.body && (s.body.type || '').endsWith('/no-change')) {
      result.replaceChildren(h('div', { class: 'notice warn', role: 'status', id: 'no-change' }, t('noChangeSave')));
      return;
    }
    if (s.status === 412) {
      result.replaceChildren(h('div', { class: 'notice warn', role: 'alert', id: 'conflict' }, t('conflict'), ' ',
        h('button', { type: 'button', class: 'secondary', onclick: render }, t('reload'))));
      return;
    }
    if (s.status === 422) {
      showErrors((s.body && s.body.errors) || [{ message: s.body && s.body.detail }], g);
      result.replaceChildren(h('div', { class: 'notice bad', role: 'alert' }, t('invalid')));
      return;
    }
    if (!s.ok) { result.replaceChildren(problem(s)); return; }
    clear();
    etag = s.headers.get('ETag') || s.body.etag || etag;
    const version = (s.body.grant && s.body.grant.version) || s.body.version;
    f.reason.value = '';
    const shown = document.getElementById('g-version');
    if (shown) shown.textContent = `${t('version')} ${version}`;
    result.replaceChildren(h('div', { class: 'notice ok', role: 'status', id: 'saved' }, `${t('saved')} ${version}`, ...changes(s.body.access_changes)));
  };
  const needReason = () => {
    if (f.reason.value.trim()) return true;
    document.getElementById('g-reason-error').textContent = `${t('changeReason')}: ${t('required')}`;
    f.reason.focus();
    return false;
  };
  // A new grant from this one (its provenance is the workflow's, not copied).
  const newId = h('input', { id: 'g-new-id', autocomplete: 'off', placeholder: `${id}-2` });
  const saveAsNew = async () => {
    if (!needReason() || !newId.value.trim()) { newId.focus(); return; }
    const g = build();
    g.id = newId.value.trim();
    delete g.provenance;
    g.reason = f.reason.value.trim();
    const s2 = await api('PUT', `/v1/admin/grants/${encodeURIComponent(g.id)}`, { body: g, headers: { 'If-None-Match': '*' } });
    if (!s2.ok) { result.replaceChildren(problem(s2)); return; }
    go(`grant/${encodeURIComponent(g.id)}`);
  };
  const remove = async () => {
    if (!needReason()) return;
    if (!window.confirm(t('deleteConfirm', { id }))) return;
    const d = await api('DELETE', `/v1/admin/grants/${encodeURIComponent(id)}?${new URLSearchParams({ reason: f.reason.value.trim() })}`, { headers: { 'If-Match': etag } });
    if (!d.ok) { result.replaceChildren(problem(d)); return; }
    go('catalog');
  };
  const form = h('form', { class: 'panel', onsubmit: (ev) => { ev.preventDefault(); save(); } },
    h('div', { class: 'editor' },
      field('g-title', t('titleField'), f.title),
      field('g-consumer', t('consumer'), f.consumer),
      field('g-roles', t('roles'), f.roles, t('commaHint')),
      field('g-purposes', t('purposes'), f.purposes, t('commaHint')),
      h('fieldset', { id: 'g-operations' }, h('legend', {}, t('operations')), ops, h('p', { class: 'field-error', id: 'g-operations-error' })),
      field('g-quota', t('quota'), f.quota),
      h('div', {}, h('label', { for: 'g-case-ref' }, f.caseRef, ` ${t('caseRefRequired')}`)),
      h('div', { class: 'wide' }, field('g-basis', t('basis'), f.basis)),
      h('div', { class: 'wide' }, field('g-reason', t('changeReason'), f.reason, t('required'))),
      field('g-valid-from', t('validFrom'), f.validFrom), field('g-valid-until', t('validUntil'), f.validUntil),
      field('g-case-pattern', t('casePattern'), f.casePattern), field('g-batch-limit', t('batchLimit'), f.batchLimit),
      access.map((a) => h('fieldset', { class: 'wide' }, h('legend', {}, h('span', { title: a.dataset }, N.ds[a.dataset] || a.dataset)),
        h('div', { class: 'checks', role: 'group', 'aria-label': t('fields') }, a.boxes),
        field(`g-fields-${a.i}`, t('fields'), a.fields, t('commaHint')),
        field(`g-masked-${a.i}`, t('maskedFields'), a.masked, 'field=mask'),
        field(`g-verify-${a.i}`, t('verifyOnly'), a.verify, t('commaHint')),
        field(`g-predicates-${a.i}`, t('predicates'), a.predicates, 'JSON')))),
    general,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: preview }, t('preview')),
      h('button', { type: 'submit' }, t('save')),
      h('a', { href: `#/history?id=${encodeURIComponent(id)}` }, t('history'))),
    h('div', { class: 'actions' },
      h('label', { for: 'g-new-id' }, t('newGrantId')), newId,
      h('button', { type: 'button', class: 'secondary', onclick: saveAsNew }, t('saveAsNew')),
      h('button', { type: 'button', class: 'danger', onclick: remove }, t('deleteGrant'))));
  f.caseRef.id = 'g-case-ref';
  return [h('h1', {}, `${t('editGrant')}: ${original.title}`), h('p', {}, h('code', {}, id), ' · ', h('span', { id: 'g-version' }, `${t('version')} ${original.version || 1}`)), form, result];
}

function diffView(text) {
  return h('pre', { class: 'diff' }, (text || '').split('\n').map((line) =>
    h('span', { class: line.startsWith('+') ? 'add' : line.startsWith('-') ? 'del' : null }, line + '\n')));
}

async function history() {
  const id = query().get('id') || '';
  const params = new URLSearchParams({ limit: '50' });
  if (id) { params.set('kind', 'grant'); params.set('id', id); }
  const r = await api('GET', `/v1/admin/history?${params}`);
  const out = [h('h1', {}, `${t('historyOf')}${id ? ': ' + id : ''}`)];
  if (!r.ok) return [...out, problem(r)];
  const changes = r.body.changes || [];
  if (changes.length === 0) return [...out, h('p', {}, t('noHistory'))];
  const result = h('div', { 'aria-live': 'polite', id: 'result' });
  const reason = h('input', { maxlength: '500', 'aria-required': 'true' });
  out.push(field('h-reason', t('changeReason'), reason, t('required')), result);
  // The grant as this page saw it: a revert made from here must not
  // overwrite a change someone saved after the page was shown.
  const seen = {};
  for (const gid of new Set(changes.filter((c) => c.kind === 'grant').map((c) => c.id))) {
    const cur = await api('GET', `/v1/admin/grants/${encodeURIComponent(gid)}`);
    if (cur.ok) seen[gid] = cur.headers.get('ETag') || cur.body.etag;
  }
  for (const c of changes) {
    const canRevert = c.kind === 'grant' && c.version && c.version > 1 && c.action !== 'delete';
    const revert = async () => {
      const to = c.version - 1;
      if (!reason.value.trim()) {
        document.getElementById('h-reason-error').textContent = `${t('changeReason')}: ${t('required')}`;
        reason.focus();
        return;
      }
      if (!window.confirm(t('revertConfirm', { id: c.id, v: to }))) return;
      const q = new URLSearchParams({ to: String(to), reason: reason.value.trim() });
      const rv = await api('POST', `/v1/admin/grants/${encodeURIComponent(c.id)}/revert?${q}`, { headers: { 'If-Match': seen[c.id] || '*' } });
      if (rv.status === 412) {
        result.replaceChildren(h('div', { class: 'notice warn', role: 'alert', id: 'conflict' }, t('conflict'), ' ',
          h('button', { type: 'button', class: 'secondary', onclick: render }, t('reload'))));
        return;
      }
      if (!rv.ok) { result.replaceChildren(problem(rv)); return; }
      const version = (rv.body.grant && rv.body.grant.version) || rv.body.version;
      // The list drawn again, with the revert in it, and said so.
      await render();
      const shown = document.getElementById('result');
      if (shown) shown.replaceChildren(h('div', { class: 'notice ok', role: 'status', id: 'reverted' }, `${t('reverted')} ${version}`));
    };
    out.push(h('section', { class: 'panel' },
      h('h2', {}, `${c.kind} ${c.id} · ${t('version')} ${c.version ?? '—'} · ${c.action}`),
      h('p', {}, `${t('time')}: ${when(c.time)} · ${t('author')}: ${c.author}`, c.reason ? ` · ${t('changeReason')}: ${c.reason}` : ''),
      h('h3', {}, t('accessChanges')),
      (c.access_changes || []).length ? h('ul', {}, c.access_changes.map((l) => h('li', { class: 'mono' }, l))) : h('p', {}, t('noChange')),
      diffView(c.diff),
      canRevert ? h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: revert }, t('revertTo', { v: c.version - 1 }))) : null));
  }
  return out;
}

async function decide() {
  const inputs = {
    dept: h('input', { required: true }), roles: h('input', {}), dataset: h('input', { required: true }),
    operation: h('select', {}, ['lookup', 'verify', 'batch'].map((o) => h('option', { value: o }, o))),
    purpose: h('input', { required: true }), case_ref: h('input', {}), fields: h('input', {}), date: h('input', { placeholder: 'YYYY-MM-DD' }),
  };
  const result = h('div', { 'aria-live': 'polite', id: 'result' });
  const form = h('form', { class: 'filters', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { dept: inputs.dept.value.trim(), roles: list(inputs.roles.value), dataset: inputs.dataset.value.trim(), operation: inputs.operation.value, purpose: inputs.purpose.value.trim() };
    if (inputs.case_ref.value.trim()) body.case_ref = inputs.case_ref.value.trim();
    if (inputs.fields.value.trim()) body.fields = list(inputs.fields.value);
    if (inputs.date.value.trim()) body.date = inputs.date.value.trim();
    const r = await api('POST', '/v1/admin/decide', { body });
    if (!r.ok) { result.replaceChildren(problem(r)); return; }
    const b = r.body;
    result.replaceChildren(h('div', { class: `notice ${b.decision === 'allow' ? 'ok' : 'bad'}` },
      h('p', {}, h('strong', {}, `${t('decision')}: `), tag(b.decision)),
      b.grant ? h('p', {}, `${t('grant')}: ${b.grant.id} @ ${b.grant.version} — ${b.grant.basis || ''}`) : null,
      b.fields ? h('p', {}, `${t('fields')}: ${b.fields.map((x) => x.mask ? `${x.name} (${x.mask})` : x.name).join(', ')}`) : null,
      b.reason ? h('p', {}, `${t('reason')}: ${b.reason} — ${b.detail || ''}`) : null,
      b.nearest_grant ? h('p', {}, `${t('nearest')}: `, h('a', { href: `#/grant/${encodeURIComponent(b.nearest_grant)}` }, b.nearest_grant)) : null));
  } },
  field('x-dept', t('dept'), inputs.dept), field('x-roles', t('roles'), inputs.roles, t('commaHint')), field('x-dataset', t('dataset'), inputs.dataset),
  field('x-operation', t('operation'), inputs.operation), field('x-purpose', t('purpose'), inputs.purpose), field('x-case', t('caseRef'), inputs.case_ref),
  field('x-fields', t('fields'), inputs.fields, t('commaHint')), field('x-date', t('date'), inputs.date),
  h('div', {}, h('button', { type: 'submit' }, t('explain'))));
  return [h('h1', {}, t('navDecide')), h('p', {}, t('decideIntro')), form, result];
}

async function departments() {
  const r = await api('GET', '/v1/admin/departments');
  const out = [h('h1', {}, t('departments'))];
  if (!r.ok) return [...out, problem(r)];
  const result = h('div', { 'aria-live': 'polite' });
  const operator = (claims(S.token) || {}).dept;
  out.push(result, table([t('dept'), t('name'), t('state'), t('reason'), t('since'), t('by'), ''],
    r.body.departments.map((d) => {
      const s = d.suspension || {};
      const reason = h('input', { 'aria-label': `${t('suspendReason')} ${d.id}`, placeholder: t('suspendReason') });
      const act = async (what) => {
        if (what === 'suspend' && !reason.value.trim()) { reason.focus(); result.replaceChildren(h('p', { class: 'error' }, `${t('suspendReason')}: ${t('required')}`)); return; }
        if (!window.confirm(t(what === 'suspend' ? 'suspendConfirm' : 'resumeConfirm', { d: d.id }))) return;
        const a = await api('POST', `/v1/admin/departments/${encodeURIComponent(d.id)}/${what}`, { body: what === 'suspend' ? { reason: reason.value.trim() } : undefined });
        if (!a.ok) { result.replaceChildren(problem(a)); return; }
        render();
      };
      return [h('code', {}, d.id), d.name, d.suspended ? h('strong', { class: 'error' }, t('suspended')) : t('active'), s.reason || '', s.since || s.at || '', s.by || '',
        d.suspended ? h('button', { type: 'button', class: 'secondary', onclick: () => act('resume') }, t('resume'))
          : d.id === operator ? t('operator')
            : h('span', {}, reason, h('button', { type: 'button', class: 'danger', onclick: () => act('suspend') }, t('suspend')))];
    })));
  return out;
}

async function tokens() {
  const r = await api('GET', '/v1/admin/revoked-tokens');
  const out = [h('h1', {}, t('navTokens')), h('p', {}, t('tokensIntro'))];
  const inputs = { jti: h('input', {}), sub: h('input', {}), issued_before: h('input', { placeholder: 'RFC 3339' }), expires: h('input', { placeholder: 'YYYY-MM-DD' }), reason: h('input', { required: true }) };
  const result = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'filters', onsubmit: async (ev) => {
    ev.preventDefault();
    const body = { reason: inputs.reason.value.trim() };
    for (const k of ['jti', 'sub', 'issued_before', 'expires']) if (inputs[k].value.trim()) body[k] = inputs[k].value.trim();
    const a = await api('POST', '/v1/admin/revoked-tokens', { body });
    if (!a.ok) { result.replaceChildren(problem(a)); return; }
    render();
  } },
  field('t-jti', t('jti'), inputs.jti), field('t-sub', t('sub'), inputs.sub), field('t-before', t('issuedBefore'), inputs.issued_before),
  field('t-expires', t('expires'), inputs.expires), field('t-reason', t('reason'), inputs.reason), h('div', {}, h('button', { type: 'submit', class: 'danger' }, t('add'))));
  out.push(form, result);
  if (!r.ok) return [...out, problem(r)];
  const entries = r.body.entries || [];
  const lift = async (e, why) => {
    if (!why.value.trim()) { why.focus(); result.replaceChildren(h('p', { class: 'error' }, `${t('liftReason')}: ${t('required')}`)); return; }
    if (!window.confirm(t('liftConfirm', { id: e.id }))) return;
    const a = await api('DELETE', `/v1/admin/revoked-tokens/${encodeURIComponent(e.id)}`, { body: { reason: why.value.trim() } });
    if (!a.ok) { result.replaceChildren(problem(a)); return; }
    render();
  };
  out.push(entries.length === 0 ? h('p', {}, t('noEntries')) : table([t('jti'), t('sub'), t('issuedBefore'), t('expires'), t('reason'), t('by'), ''],
    entries.map((e) => {
      const why = h('input', { 'aria-label': `${t('liftReason')} ${e.id}`, placeholder: t('liftReason'), maxlength: '500' });
      return [e.jti || '', e.sub || '', when(e.issued_before), when(e.expires), e.reason || '', e.by || '',
        h('span', {}, why, h('button', { type: 'button', class: 'secondary', 'aria-label': `${t('lift')} ${e.id}`, onclick: () => lift(e, why) }, t('lift')))];
    })));
  return out;
}

// ---------------------------------------------------------------- sharing

// The operator department's own roles: they review and oversee, never file.
const overseer = () => ['data_authority', 'privacy_officer', 'policy_admin'].some((x) => roles().includes(x));
const myDept = () => (claims(S.token) || {}).dept || '';

const REQUEST_STATES = { filed: 'filed', reviewed: 'reviewedState', approved: 'approved', refused: 'refusedState', returned: 'returned', withdrawn: 'withdrawn', revoked: 'revoked' };

// A set of checkboxes, one per [value, label]; returns the element and a reader.
function checkboxes(name, options, checked) {
  const boxes = options.map(([v, label]) => {
    const box = h('input', { type: 'checkbox', name, value: v, checked: checked.includes(v) });
    return h('label', { class: 'check' }, box, ` ${label}`);
  });
  return [h('div', { class: 'checks', role: 'group' }, boxes), () => boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value)];
}

function fileForm(directory, done) {
  const datasets = (directory.datasets || []).filter((d) => d.class !== 'none' && d.owner !== myDept());
  const ds = h('select', { name: 'dataset' }, h('option', { value: '' }, t('chooseDataset')),
    datasets.map((d) => h('option', { value: d.dataset, title: d.dataset }, `${d.title}（${d.owner_name || d.owner}，${sharingClass(d.class)}）`)));
  const fieldBox = h('div');
  let readFields = () => [];
  ds.addEventListener('change', () => {
    const d = datasets.find((x) => x.dataset === ds.value);
    const [el, read] = checkboxes('fields', d ? d.fields.map((f) => [f.name, f.title || f.name]) : [], []);
    readFields = read;
    fieldBox.replaceChildren(el);
  });
  const inputs = {
    title: h('input', { name: 'title' }), use_case: h('textarea', { name: 'use_case', rows: 2, maxlength: '500' }),
    basis: h('input', { name: 'basis' }), purposes: h('input', { name: 'purposes' }), roles: h('input', { name: 'roles' }),
    valid_until: h('input', { name: 'valid_until', type: 'date' }), renews: h('input', { name: 'renews', autocomplete: 'off' }),
  };
  const caseBox = h('input', { type: 'checkbox', name: 'case_ref_required', checked: true });
  const [opsEl, readOps] = checkboxes('operations', [['lookup', 'lookup 查询'], ['verify', 'verify 核验'], ['batch', 'batch 批量']], ['lookup']);
  const msg = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'panel editor', onsubmit: async (ev) => {
    ev.preventDefault();
    const conditions = { case_ref_required: caseBox.checked };
    if (inputs.valid_until.value) conditions.valid_until = inputs.valid_until.value;
    const body = {
      use_case: inputs.use_case.value.trim(),
      grant: { title: inputs.title.value.trim(), roles: list(inputs.roles.value), purposes: list(inputs.purposes.value),
        operations: readOps(), basis: inputs.basis.value.trim(), conditions, access: [{ dataset: ds.value, fields: readFields() }] },
    };
    if (inputs.renews.value.trim()) body.renews = inputs.renews.value.trim();
    const r = await api('POST', '/v1/sharing/requests', { body });
    if (!r.ok) { msg.replaceChildren(problem(r), (r.body && r.body.errors || []).length ? h('ul', {}, r.body.errors.map((e) => h('li', {}, e.message || String(e)))) : null); return; }
    done(h('div', { class: 'notice ok', id: 'filed' }, `${t('filedOk')} ${r.body.id}（${t('reviewDue')} ${r.body.review_due}）`));
  } },
  field('f-dataset', t('dataset'), ds), h('div', { class: 'wide' }, h('span', { class: 'label' }, t('fields')), fieldBox),
  field('f-title', t('titleField'), inputs.title), field('f-use', t('useCase'), inputs.use_case),
  field('f-basis', t('basis'), inputs.basis), field('f-purposes', t('purposes'), inputs.purposes, t('commaHint')),
  field('f-roles', t('roles'), inputs.roles, t('commaHint')), h('div', {}, h('span', { class: 'label' }, t('operations')), opsEl),
  h('div', {}, h('label', {}, caseBox, ` ${t('caseRefRequired')}`)), field('f-until', t('validUntil'), inputs.valid_until),
  field('f-renews', t('renews'), inputs.renews),
  h('div', { class: 'wide' }, h('button', { type: 'submit' }, t('fileIt'))), msg);
  return h('details', { class: 'noprint' }, h('summary', {}, t('fileRequest')), form);
}

// What the caller may do with request `r`: a form, or nothing.
function requestActions(r) {
  const path = (step) => `/v1/sharing/requests/${encodeURIComponent(r.id)}/${step}`;
  const msg = h('div');
  const send = async (p, body) => {
    const a = await api('POST', p, { body });
    if (a.ok) render(); else msg.replaceChildren(problem(a));
  };
  const decision = (step, withFields) => {
    const sel = h('select', { 'aria-label': `${t('decision')} ${r.id}` }, [['approve', 'approve'], ['refuse', 'refuse'], ['return', 'returnIt']].map(([v, k]) => h('option', { value: v }, t(k))));
    const reason = h('input', { 'aria-label': `${t('reason')} ${r.id}`, placeholder: t('reasonHint'), maxlength: '500' });
    const a = (r.grant.access || [])[0] || {};
    const asked = [...(a.fields || []), ...Object.keys(a.masked || {}), ...(a.verify_only || [])];
    const [fieldsEl, readFields] = checkboxes(`fields-${r.id}`, asked.map((f) => [f, f]), asked);
    return h('div', {}, sel, reason, withFields ? h('div', {}, h('span', { class: 'label' }, t('fieldsApproved')), fieldsEl) : null,
      h('div', { class: 'actions' }, h('button', { type: 'button', onclick: () => {
        const body = { decision: sel.value };
        if (reason.value.trim()) body.reason = reason.value.trim();
        if (withFields && sel.value === 'approve' && readFields().length < asked.length) body.fields = readFields();
        send(path(step), body);
      } }, t(step === 'review' ? 'submitReview' : 'submitAnswer'))), msg);
  };
  const r0 = roles();
  if (r.state === 'filed' && r0.includes('data_authority')) return decision('review', false);
  if (r.state === 'reviewed' && r0.includes('data_steward') && myDept() === r.owner) return decision('answer', true);
  if (r.state === 'approved' && r0.includes('data_steward') && myDept() === r.owner) {
    const reason = h('input', { 'aria-label': `${t('reason')} ${r.id}`, maxlength: '500' });
    return h('div', {}, reason, h('div', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: () => {
      send(`/v1/sharing/grants/${encodeURIComponent(r.grant.id)}/revoke`, { reason: reason.value.trim() });
    } }, t('revokeGrant'))), msg);
  }
  if (['filed', 'reviewed', 'returned'].includes(r.state) && myDept() === r.consumer) {
    return h('div', {}, h('button', { type: 'button', class: 'secondary', onclick: () => send(path('withdraw'), {}) }, t('withdraw')), msg);
  }
  return '';
}

async function sharingRequests() {
  const out = [h('h1', {}, t('navSharing')), h('p', {}, t('sharingIntro'))];
  const [dir, r] = await Promise.all([overseer() ? null : api('GET', '/v1/sharing/directory'), api('GET', '/v1/sharing/requests')]);
  const flash = h('div', { id: 'flash' });
  if (dir && dir.ok) out.push(fileForm(dir.body, (notice) => { render().then(() => { const f = document.getElementById('flash'); if (f) f.replaceChildren(notice); }); }));
  out.push(flash);
  if (!r.ok) return [...out, problem(r)];
  const all = r.body.requests || [];
  if (all.length === 0) return [...out, h('p', {}, t('noRequests'))];
  out.push(table([t('requestId'), t('dataset'), t('pairShort'), t('state'), t('due'), t('lastStep'), t('act')], all.map((x) => {
    const last = (x.history || [])[x.history.length - 1] || {};
    const due = x.state === 'filed' ? x.review_due : x.state === 'reviewed' ? x.answer_due : '';
    return [h('code', {}, x.id), h('span', { title: x.dataset }, x.grant && x.grant.title ? x.grant.title : x.dataset, h('br'), h('small', {}, x.use_case)),
      h('span', {}, deptName(x.consumer), ' → ', deptName(x.owner)),
      h('span', { class: 'req-state' }, t(REQUEST_STATES[x.state]) || x.state, x.overdue ? h('strong', { class: 'bad' }, ` ${t('objOverdue')}`) : null),
      due || '', h('span', {}, last.action || '', last.by ? ` · ${last.by}` : '', last.reason ? h('br') : null, last.reason || ''),
      requestActions(x)];
  })));
  return out;
}

async function dataObjections() {
  const out = [h('h1', {}, t('navDataObjections')), h('p', {}, t('doIntro'))];
  const [cat, r] = await Promise.all([overseer() ? null : api('GET', '/v1/catalog'), api('GET', '/v1/objections')]);
  if (cat && cat.ok && (cat.body.datasets || []).length) {
    const seen = cat.body.datasets;
    const ds = h('select', { name: 'dataset' }, h('option', { value: '' }, t('chooseDataset')),
      seen.map((d, i) => h('option', { value: String(i), title: d.dataset }, `${d.title}（${d.owner}）`)));
    const fld = h('select', { name: 'field' });
    ds.addEventListener('change', () => {
      const d = seen[Number(ds.value)];
      fld.replaceChildren(...(d ? d.fields : []).map((f) => h('option', { value: f.name, title: f.name }, f.title || f.name)));
    });
    const id = h('input', { name: 'resident_id', autocomplete: 'off', maxlength: '18', inputmode: 'text' });
    const seq = h('input', { name: 'seq', type: 'number', min: 1 });
    const node = h('input', { name: 'node', autocomplete: 'off' });
    const what = h('textarea', { name: 'what', rows: 3, maxlength: '1000' });
    const msg = h('div', { 'aria-live': 'polite' });
    const form = h('form', { class: 'panel editor', onsubmit: async (ev) => {
      ev.preventDefault();
      const d = seen[Number(ds.value)];
      const body = { dataset: d ? d.dataset : '', field: fld.value, resident_id: id.value.trim(), what: what.value.trim(), seq: Number(seq.value) || 0 };
      if (node.value.trim()) body.node = node.value.trim();
      const a = await api('POST', '/v1/objections', { body });
      if (!a.ok) { msg.replaceChildren(problem(a)); return; }
      id.value = '';
      await render();
      const f = document.getElementById('flash');
      if (f) f.replaceChildren(h('div', { class: 'notice ok', id: 'reported' }, `${t('reportedOk')} ${a.body.due}（${a.body.id}）`));
    } },
    field('do-dataset', t('dataset'), ds), field('do-field', t('fields'), fld), field('do-resident', t('resident'), id),
    field('do-seq', t('disclosureSeq'), seq, t('disclosureSeqHint')), field('do-node', t('disclosureNode'), node, t('optional')),
    h('div', { class: 'wide' }, field('do-what', t('what'), what)), h('div', { class: 'wide' }, h('button', { type: 'submit' }, t('reportIt'))), msg);
    out.push(h('details', { class: 'noprint' }, h('summary', {}, t('reportIt')), form));
  }
  out.push(h('div', { id: 'flash' }));
  if (!r.ok) return [...out, problem(r)];
  const all = r.body.objections || [];
  if (all.length === 0) return [...out, h('p', {}, t('noDataObjections'))];
  const answerCell = (o) => {
    if (o.answer) return h('span', {}, t(o.answer.outcome) || o.answer.outcome, o.answer.note ? h('br') : null, o.answer.note || '', h('br'), h('small', {}, `${o.answer.by} · ${o.answer.at}`));
    if (!(roles().includes('data_steward') && myDept() === o.owner)) return '';
    const sel = h('select', { 'aria-label': `${t('outcome')} ${o.id}` }, ['corrected', 'confirmed', 'not_ours'].map((v) => h('option', { value: v }, t(v))));
    const note = h('input', { 'aria-label': `${t('note')} ${o.id}`, maxlength: '500' });
    const msg = h('div');
    return h('div', {}, sel, note, h('div', { class: 'actions' }, h('button', { type: 'button', onclick: async () => {
      const body = { outcome: sel.value };
      if (note.value.trim()) body.note = note.value.trim();
      const a = await api('POST', `/v1/objections/${encodeURIComponent(o.id)}/answer`, { body });
      if (a.ok) render(); else msg.replaceChildren(problem(a));
    } }, t('submitAnswer'))), msg);
  };
  out.push(table([t('requestId'), t('dataset'), t('resident'), t('what'), t('reporter'), t('state'), t('due'), t('outcome')], all.map((o) => [
    h('code', {}, o.id), h('span', {}, dsName(o.dataset), ' · ', named(o.field, N.field[`${o.dataset}/${o.field}`])),
    h('span', { class: 'mono' }, o.resident_id || o.resident_id_masked), o.what, `${o.filed_by}`,
    h('span', {}, t(o.state) || o.state, o.overdue ? h('strong', { class: 'bad' }, ` ${t('objOverdue')}`) : null), o.due, answerCell(o)])));
  return out;
}

// ---------------------------------------------------------------- start

document.getElementById('lang').addEventListener('click', () => {
  S.lang = S.lang === 'zh' ? 'en' : 'zh';
  localStorage.setItem('tongban.lang', S.lang);
  render();
});
document.getElementById('signout').addEventListener('click', () => {
  S.token = '';
  // Nothing of the last officer's work stays for the next.
  reportFor = '';
  sessionStorage.removeItem('tongban.token');
  go('signin');
});
window.addEventListener('hashchange', render);
render();
