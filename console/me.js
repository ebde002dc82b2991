// tongban: a resident's own record of use (/v1/me/…), in Chinese, phone
// first. The token the resident signed in with (the province's 一网通办
// login hands it over) stays in sessionStorage for this tab only.

const S = { token: sessionStorage.getItem('tongban.me.token') || '' };
const main = document.getElementById('main');

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const kid of kids.flat(Infinity)) {
    if (kid === undefined || kid === null || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

// 2026-12-06T19:45:39.24+08:00 → 2026年12月6日 19:45
function when(t) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(t || '');
  return m ? `${m[1]}年${Number(m[2])}月${Number(m[3])}日 ${m[4]}:${m[5]}` : (t || '');
}
function day(d) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(d || '');
  return m ? `${m[1]}年${Number(m[2])}月${Number(m[3])}日` : (d || '');
}
// "民政局 Civil Affairs Bureau" → "民政局"
const zhName = (s) => (s || '').split(/\s+(?=[A-Za-z])/)[0];

async function api(method, path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: Object.assign({ Authorization: `Bearer ${S.token}`, Accept: 'application/json', 'Accept-Language': 'zh-CN' },
        body === undefined ? {} : { 'Content-Type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch {
    return { ok: false, status: 0, body: { title: '无法连接服务', detail: '请检查网络后重试。' } };
  }
  let json = null;
  try { json = await resp.json(); } catch { json = null; }
  return { ok: resp.ok, status: resp.status, body: json || {} };
}

function problem(r) {
  if (r.status === 401) return h('div', { class: 'notice bad', role: 'alert' }, '登录已失效，请重新登录。');
  if (r.status === 429) return h('div', { class: 'notice bad', role: 'alert' }, '查询过于频繁，请稍后再试。');
  return h('div', { class: 'notice bad', role: 'alert' }, r.body.title || '出错了', r.body.detail ? h('div', {}, r.body.detail) : null);
}

const STATE = { open: '处理中', answered: '已答复', closed: '已办结' };

function signin(message) {
  document.getElementById('signout').hidden = true;
  const area = h('textarea', { id: 'token', rows: 4, autocomplete: 'off', spellcheck: 'false' });
  main.replaceChildren(h('div', {},
    h('h1', {}, '查看我的数据使用记录'),
    h('p', { class: 'lead' }, '请通过一网通办登录后进入本页。演示环境可粘贴登录令牌。'),
    message ? h('div', { class: 'notice bad', role: 'alert' }, message) : null,
    h('form', { onsubmit: (e) => { e.preventDefault(); S.token = area.value.trim(); sessionStorage.setItem('tongban.me.token', S.token); show(); } },
      h('label', { for: 'token' }, '登录令牌'), area, h('p', {}, h('button', { type: 'submit' }, '进入')))));
}

function objectionForm(d, after) {
  const area = h('textarea', { id: `o-${d.node}-${d.seq}`, maxlength: '500', placeholder: '请写明您认为哪里不妥，例如：我没有办理此项业务。' });
  const msg = h('div');
  return h('form', { class: 'objection', onsubmit: async (e) => {
    e.preventDefault();
    const r = await api('POST', '/v1/me/objections', { node: d.node, seq: d.seq, text: area.value });
    if (!r.ok) { msg.replaceChildren(problem(r)); return; }
    msg.replaceChildren(h('div', { class: 'notice ok', role: 'status' }, `已受理，我们将在 ${day(r.body.due)} 前答复您。`));
    area.disabled = true;
    after();
  } }, h('label', { for: `o-${d.node}-${d.seq}` }, '您的异议'), area, h('p', {}, h('button', { type: 'submit' }, '提交异议')), msg);
}

function useCard(d, reload) {
  const check = d.operation === 'verify';
  const slot = h('div');
  return h('article', { class: 'card' },
    h('h3', {}, zhName(d.department_name) || d.department),
    h('div', { class: 'when' }, when(d.time)),
    h('dl', {},
      h('dt', {}, '用途'), h('dd', {}, d.purpose_title || d.purpose),
      h('dt', {}, '依据'), h('dd', {}, d.basis || '—'),
      d.case_ref ? [h('dt', {}, '办件编号'), h('dd', {}, d.case_ref)] : null,
      h('dt', {}, '数据'), h('dd', {}, zhName(d.dataset_title) || d.dataset),
      h('dt', {}, check ? '核验项目' : '提供信息'), h('dd', {}, (d.fields || []).map((f) => f.split(' ')[0]).join('、')),
      h('dt', {}, '方式'), h('dd', {}, h('span', { class: check ? 'kind check' : 'kind' }, d.use_zh)),
      d.clerk ? [h('dt', {}, '经办人'), h('dd', {}, d.clerk)] : null),
    slot,
    h('p', {}, h('button', { type: 'button', class: 'secondary', onclick: (e) => { e.target.hidden = true; slot.replaceChildren(objectionForm(d, reload)); } }, '对这次使用提出异议')));
}

function objectionCard(o) {
  const d = o.disclosure || {};
  return h('article', { class: 'card' },
    h('h3', {}, h('span', { class: `state ${o.state}` }, STATE[o.state] || o.state), ' ', zhName(d.department_name) || d.department || ''),
    h('div', { class: 'when' }, `提出于 ${when(o.filed_at)}；答复期限 ${day(o.due)}`, o.overdue ? h('span', { class: 'late' }, '（已逾期）') : null),
    h('p', {}, o.text),
    o.reply ? h('div', { class: 'reply' }, h('strong', {}, `答复（${when(o.reply.at)}）：`), o.reply.text) : null);
}

// The resident's objections, drawn into `section` (again after each new one).
async function loadObjections(section) {
  const r = await api('GET', '/v1/me/objections');
  const list = r.ok ? (r.body.objections || []) : [];
  section.replaceChildren(h('div', {},
    h('h2', {}, '我的异议'),
    !r.ok ? problem(r) : (list.length ? list.map(objectionCard) : h('p', { class: 'empty' }, '您还没有提出异议。'))));
}

async function show() {
  if (!S.token) { signin(); return; }
  document.getElementById('signout').hidden = false;
  main.replaceChildren(h('p', {}, '正在加载…'));
  const uses = await api('GET', '/v1/me/disclosures');
  if (!uses.ok) {
    if (uses.status === 401) { sessionStorage.removeItem('tongban.me.token'); S.token = ''; signin('登录已失效或令牌不是居民本人的，请重新登录。'); return; }
    main.replaceChildren(problem(uses));
    return;
  }
  const list = uses.body.disclosures || [];
  const section = h('section', { id: 'objections' });
  const refresh = () => loadObjections(section);
  main.replaceChildren(h('div', {},
    h('h1', {}, '我的数据使用记录'),
    h('p', { class: 'lead' }, `身份证号 ${uses.body.resident}。以下是各部门通过通办平台使用您的数据的每一次记录，共 ${list.length} 次，最近的在前。您无需再向这些部门重复提交这些材料。`),
    h('p', { class: 'lead' }, '如您认为某次使用不妥，可以提出异议，我们将在规定的工作日内答复。'),
    list.length ? list.map((d) => useCard(d, refresh)) : h('p', { class: 'empty' }, '目前没有部门使用过您的数据。'),
    section));
  await refresh();
}

document.getElementById('signout').addEventListener('click', () => {
  sessionStorage.removeItem('tongban.me.token');
  S.token = '';
  signin();
});
show();
