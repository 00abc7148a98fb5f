// The teacher page: one table of the class, the daemon's last pass and the pending plan.
// Plain ES module, no build step. Writes send the hub's XSRF token; the server re-validates everything.

const xsrf = document.querySelector('meta[name="xsrf"]').content;
// The page's words in site.yaml's delivery.language (reconciler/config/languages/<code>.json).
const STRINGS = JSON.parse(document.getElementById('strings').textContent);
const t = (key, vars = {}) => (STRINGS[key] ?? key).replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? `{${name}}`));
const $ = (selector, root = document) => root.querySelector(selector);
let state = { quotas: [], rosterInGit: false, invalid: null, live: false, refreshed: 0, etag: null, people: [] };
let editing = null; // the person being edited, null when adding
let refreshing = null; // the refresh in flight: a slow pass must not stack requests
let again = false; // asked for while one was in flight: its answer may predate the change, so one more follows

// application/json and its +json kinds: application/merge-patch+json (a PATCH), application/problem+json (an error)
const isJson = (type) => /^application\/([\w.-]+\+)?json\s*(;|$)/i.test(type ?? '');
// A PATCH is a JSON merge patch (RFC 7396): the members given are set, a null removes one.
const MERGE_PATCH = 'application/merge-patch+json';

async function call(method, path, body, type = 'application/json', ifMatch = null) {
  const headers = { 'X-XSRFToken': xsrf };
  if (body !== undefined && type) headers['Content-Type'] = type;
  if (ifMatch) headers['If-Match'] = `"${ifMatch}"`;
  const response = await fetch(path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : (isJson(type) ? JSON.stringify(body) : body),
  });
  const data = isJson(response.headers.get('Content-Type')) ? await response.json() : null;
  if (ifMatch && response.ok && response.headers.get('ETag')) {
    state.etag = response.headers.get('ETag').replaceAll('"', ''); // the version this write made: the next is on it
  }
  if (!response.ok) {
    // every error of the API is problem details (RFC 9457): detail for the teacher, problems per field
    const error = new Error(data?.detail || data?.title || `${response.status} ${response.statusText}`);
    error.problems = Array.isArray(data?.problems) ? data.problems : [];
    error.stale = response.status === 412;
    throw error;
  }
  return data;
}

// A change to classroom.yaml is made on the version this page shows (If-Match): if the file changed since -- another
// teacher, an editor, CI -- nothing is written (412); the page reloads and says what changed, and the teacher makes
// the change again on what is there now.
async function edit(method, path, body, type = 'application/json') {
  // the class as the teacher saw it when they made the change: a refresh landing while the write is on its way
  // (a pushed change) must not hide what changed from the list below
  const before = state.people;
  try {
    return await call(method, path, body, type, state.etag);
  } catch (error) {
    if (error.stale) {
      await refresh();
      while (refreshing) await refreshing; // a refresh already in flight may predate the other writer's change
      error.message = t('js.stale');
      error.problems = whatChanged(before, state.people).map((message) => ({ path: '', message }));
    }
    throw error;
  }
}

const WRITTEN = ['name', 'emails', 'quota', 'overrides', 'status', 'role'];
function whatChanged(before, after) {
  // The people whose entry in classroom.yaml differs between two versions the page saw.
  const old = new Map(before.map((p) => [p.username, p]));
  const now = new Map(after.map((p) => [p.username, p]));
  const lines = [];
  for (const [name, person] of now) {
    if (!old.has(name)) lines.push(t('js.stale_added', { user: name }));
    else if (WRITTEN.some((key) => JSON.stringify(old.get(name)[key]) !== JSON.stringify(person[key]))) {
      lines.push(t('js.stale_changed', { user: name }));
    }
  }
  for (const name of old.keys()) if (!now.has(name)) lines.push(t('js.stale_removed', { user: name }));
  return lines;
}

function size(bytes) {
  if (bytes === null || bytes === undefined) return '–';
  const units = [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]];
  for (const [unit, factor] of units) {
    if (bytes >= factor) return `${(bytes / factor).toFixed(bytes % factor ? 1 : 0)} ${unit}`;
  }
  return `${bytes} B`;
}

function ago(iso) {
  if (!iso) return null;
  const minutes = Math.round((Date.now() - Date.parse(iso)) / 60000);
  if (minutes < 1) return t('js.just_now');
  if (minutes < 90) return t('js.min_ago', { n: minutes });
  const hours = Math.round(minutes / 60);
  return hours < 48 ? t('js.h_ago', { n: hours }) : t('js.days_ago', { n: Math.round(hours / 24) });
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'class') node.className = value;
    else if (key.startsWith('data-')) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function usage(used, limit, label) {
  // A <meter> turns amber at 80 % and red at 95 % of the limit: no inline styles needed (CSP).
  const cell = el('td', { class: 'usage' });
  if (limit) {
    cell.append(el('meter', { min: 0, max: limit, value: Math.min(used ?? 0, limit), low: 0.8 * limit,
      high: 0.95 * limit, optimum: 0, title: `${label}: ${t('js.of', { used: size(used), limit: size(limit) })}` }));
  }
  cell.append(el('span', { class: 'numbers' }, `${used === null ? '–' : size(used)} / ${size(limit)}`));
  return cell;
}

function server(person) {
  if (person.server === null) return el('td', { class: 'muted' }, t('js.unknown'));
  if (person.server !== 'running') {
    const last = ago(person.last_activity);
    return el('td', { class: 'muted' }, last ? t('js.stopped_active', { when: last }) : t('js.stopped'));
  }
  const idle = person.last_activity ? (Date.now() - Date.parse(person.last_activity)) / 60000 : 0;
  const cell = idle >= 15 ? el('td', { class: 'idle' }, t('js.idle', { n: Math.round(idle) }))
    : el('td', { class: 'ok' }, t('js.running'));
  if (person.node) cell.append(el('span', { class: 'node muted' }, ` ${t('js.on_node', { node: person.node })}`));
  if (person.stale_image) cell.append(el('br'), el('small', { class: 'warn' }, t('js.stale_image')));
  return cell;
}

const LABELS = ['person', 'account', 'quota', 'disk', 'memory', 'server', 'credentials'].map((c) => t(`page.col.${c}`))
  .concat(['']);

function row(person) {
  // Teachers are changed in classroom.yaml itself (the API refuses); removed people have no entry to edit.
  const writable = !state.rosterInGit && !state.invalid && person.role === 'student';
  const who = el('td', {}, el('strong', {}, person.name ?? person.username), el('br'),
    el('code', {}, person.username), person.role === 'teacher' ? el('span', { class: 'tag' }, t('js.teacher')) : null);
  // someone disabled (or removed) before their account was ever made: nothing is missing, it was never created
  const never = person.account === 'missing' && person.status !== 'active';
  const account = el('td', { class: never ? 'muted' : (person.account === 'enabled' ? 'ok' : 'warn') },
    never ? t('js.not_created') : person.account);
  if (person.status !== 'active') account.append(el('br'), el('small', {}, t('js.file_status', { status: person.status })));
  const quota = el('td');
  if (writable && person.quota !== null) {
    const select = el('select', { 'data-user': person.username, title: t('js.change_quota'), 'aria-label': 'quota' });
    for (const name of state.quotas) select.append(el('option', { value: name, selected: name === person.quota }, name));
    select.addEventListener('change', () => changeQuota(person, select));
    quota.append(select);
  } else {
    quota.append(person.quota ?? '–');
  }
  quota.append(el('br'), el('small', {}, `${person.cpu ?? '–'} CPU`));
  const actions = el('td', { class: 'actions' });
  if (writable) {
    actions.append(el('button', { class: 'quiet', onclick: () => openPerson(person) }, t('js.edit')));
    if (person.status === 'active') {
      actions.append(el('button', { class: 'quiet', onclick: () => disable(person) }, t('js.disable')));
    } else if (person.status === 'disabled') {
      actions.append(el('button', { class: 'quiet', onclick: () => change(person.username, { status: 'active' }, t('js.enabled')) }, t('js.enable')));
    }
  }
  if (person.status === 'removed' && !state.rosterInGit && !state.invalid && person.account !== 'missing') {
    actions.append(el('button', { class: 'quiet', onclick: () => enableAgain(person) }, t('js.enable_again')));
  }
  if (person.role === 'student' && person.status === 'active' && person.account !== 'missing') {
    actions.append(el('button', { class: 'quiet', onclick: () => reset(person) }, t('js.reset_password')));
  }
  if (person.role === 'student' && ['active', 'disabled', 'archived'].includes(person.status) && person.account !== 'missing') {
    // a checked archive of the student's files, taken consistently even while their server runs
    actions.append(el('a', { class: 'button quiet', href: `api/students/${encodeURIComponent(person.username)}/export`,
      download: '', title: t('js.download_hint', { user: person.username }) }, t('js.download')));
  }
  if (person.server_url) {
    // the student's own origin (per-user subdomains): nothing it serves can act as you here or on the hub
    actions.append(el('a', { class: 'button quiet', href: person.server_url, target: '_blank', rel: 'noopener noreferrer',
      title: t('js.open_hint', { user: person.username }) }, t('js.open')));
  }
  const cells = [who, account, quota, usage(person.disk_used, person.disk_quota, 'disk'),
    usage(person.memory_used, person.memory_limit, 'memory'), server(person), el('td', {}, person.credentials ?? '–'),
    actions];
  // the column headings, for the card layout of narrow screens (CSS shows them before each value)
  cells.forEach((cell, i) => cell.setAttribute('data-label', LABELS[i]));
  return el('tr', { 'data-user': person.username }, ...cells);
}

function show(text, kind = 'info', problems = []) {
  const box = $('#message');
  box.replaceChildren(el('span', {}, text));
  if (problems.length) box.append(el('ul', {}, ...problems.map((p) => el('li', {}, p.path ? `${p.path}: ${p.message}` : p.message))));
  box.className = kind;
  box.hidden = false;
}

function describe(action) {
  const symbol = { create: '+', update: '~', disable: '−', destroy: '!' }[action.op] ?? action.op;
  return el('li', { class: action.destructive ? 'destructive' : '' },
    el('code', {}, `${symbol} ${action.kind} ${action.target}`), action.reason ? ` — ${action.reason}` : '',
    ...(action.waits ? [el('br'), el('small', { class: 'warn' }, `waits: ${action.waits}`)] : []));
}

async function loadStudents() {
  const data = await call('GET', 'api/students');
  state.etag = data.etag;
  state.people = data.students;
  state.quotas = data.quotas;
  state.rosterInGit = data.roster_in_git;
  state.invalid = data.invalid;
  state.quotaSizes = data.quota_sizes ?? {};
  state.diskChanges = data.disk_changes;
  const note = $('#invalid-note');
  note.hidden = !data.invalid;
  if (data.invalid) {
    // the class below is the last valid version, still in force: say what is wrong and who changed the file
    note.replaceChildren(
      el('strong', {}, t('js.invalid_title')), t('js.invalid_body'),
      el('ul', {}, ...data.invalid.problems.map((p) => el('li', {}, el('code', {}, p)))),
      el('small', {}, t('js.changed', { who: data.invalid.changed })));
  }
  // edits are saved to classroom.yaml either way; whether anything applies them is the daemon's heartbeat
  const daemon = data.daemon;
  $('#daemon-note').hidden = !daemon || daemon.running;
  if (daemon && !daemon.running) {
    $('#daemon-note').textContent = daemon.heard === null ? t('js.daemon_never')
      : t('js.daemon_down', { ago: ago(new Date(Date.now() - daemon.heard * 1000).toISOString()) });
  }
  $('#classroom').textContent = data.classroom;
  document.title = `${document.title.split(' · ')[0]} · ${data.classroom}`;
  $('#git-note').hidden = !data.roster_in_git;
  $('#open-note').hidden = !data.open_servers;
  $('#open-note').textContent = data.open_servers ?? '';
  showMaterial(data.course_material);
  document.querySelectorAll('.write').forEach((b) => { b.disabled = data.roster_in_git || Boolean(data.invalid); });
  $('#hub-state').textContent = data.hub === null ? t('js.hub_not_configured')
    : (data.hub.reachable ? t('js.hub_reachable') : t('js.hub_unreachable', { error: data.hub.error }));
  const people = data.students;
  const running = people.filter((p) => p.server === 'running').length;
  $('#count').textContent = t('js.count', { students: people.filter((p) => p.role === 'student').length, running });
  fillTable(people);
}

// A class of a thousand: the first screenful of rows at once, the rest a chunk per frame, so the table is on screen
// as soon as the answer is (building every row first kept a phone blank for a further half second).  A newer
// refresh abandons an older fill.
const FIRST_ROWS = 40;
const ROWS_PER_FRAME = 150;
let fillGeneration = 0;

function fillTable(people) {
  const generation = ++fillGeneration;
  const body = $('#students tbody');
  body.replaceChildren(...people.slice(0, FIRST_ROWS).map(row));
  let next = FIRST_ROWS;
  const more = () => {
    if (generation !== fillGeneration || next >= people.length) return;
    body.append(...people.slice(next, next + ROWS_PER_FRAME).map(row));
    next += ROWS_PER_FRAME;
    requestAnimationFrame(more);
  };
  if (next < people.length) requestAnimationFrame(more);
}

async function loadPlan() {
  try {
    const plan = await call('GET', 'api/plan');
    $('#plan').replaceChildren(...(plan.actions.length ? plan.actions.map(describe) : [el('li', { class: 'muted' }, t('js.nothing_planned'))]));
    $('#drift').replaceChildren(...(plan.drift.length ? plan.drift.map(describe) : [el('li', { class: 'muted' }, t('js.none'))]));
    const refused = plan.refused.map((n) => n.message).join('; ');
    $('#plan-summary').textContent = refused ? t('js.refused', { why: refused })
      : t('js.plan_summary', { changes: plan.actions.length, drift: plan.drift.length });
  } catch (error) {
    $('#plan-summary').textContent = state.invalid ? t('js.plan_invalid') : error.message;
    $('#plan').replaceChildren(el('li', { class: 'muted' }, state.invalid ? t('js.plan_invalid_list') : error.message));
    $('#drift').replaceChildren();
  }
}

async function loadStatus() {
  try {
    const status = await call('GET', 'api/status');
    const failed = Object.entries(status.failed ?? {}).map(([who, why]) => `${who}: ${why}`);
    const waiting = Object.entries(status.waiting ?? {}).map(([who, why]) => t('js.waiting', { who, why }));
    const low = (status.disks ?? []).filter((disk) => disk.low).map((disk) =>
      t('js.low_disk', { what: disk.what, path: disk.path, free: size(disk.free), size: size(disk.size) }));
    const problems = [...(status.problems ?? []), ...waiting, ...low];
    const commit = status.git ? ` · commit ${status.git.commit.slice(0, 8)}${status.git.dirty ? t('js.edited') : ''}` : '';
    $('#last-pass').replaceChildren(el('span', { class: status.result === 'converged' ? 'ok' : 'warn' }, status.result),
      ` ${ago(status.time)} · ${t('js.applied', { n: status.applied ?? 0 })}${commit}`,
      ...[...failed, ...problems].map((text) => el('small', { class: 'warn' }, el('br'), text)));
    showLesson(status.prewarm);
  } catch (error) {
    $('#last-pass').textContent = error.message;
  }
}

async function loadAssignments() {
  // classroom.yaml's assignments: where each stands, and each active student's copy, submission and feedback
  try {
    showAssignments((await call('GET', 'api/assignments')).assignments);
  } catch (error) {
    $('#assignments').replaceChildren(el('p', { class: 'warn' }, error.message));
  }
}

const VERDICT = { 'on time': 'ok', late: 'warn', missing: 'warn' };

function showAssignments(assignments) {
  $('#assignments-section').hidden = !assignments.length;
  const writable = !state.rosterInGit && !state.invalid;
  $('#assignments').replaceChildren(...assignments.map((work) => {
    const times = [['release', 'js.assign_release'], ['due', 'js.assign_due'], ['late_until', 'js.assign_late'],
      ['feedback', 'js.assign_feedback']].filter(([key]) => work.shown[key])
      .map(([key, words]) => t(words, { when: work.shown[key] }));
    const counts = work.due ? t('js.assign_counts', { ...work.submissions, on_time: work.submissions['on time'],
      not_yet: work.submissions['not yet'] }) : '';
    const rows = work.students.map((row) => {
      const state = work.due ? (row.submission ?? t('js.assign_not_yet')) : (row.handed_out ? t('js.assign_has_copy') : '–');
      const extra = [];
      if (row.username in work.extensions) extra.push(t('js.assign_extended', { when: row.deadline_shown }));
      if (row.changed_since) extra.push(t('js.assign_changed'));
      if (row.feedback) extra.push(t(row.feedback === 'returned' ? 'js.assign_fb_returned' : 'js.assign_fb_written'));
      const extend = work.due ? [' ', el('button', { class: 'write quiet small', disabled: !writable,
        onclick: () => extendFor(work.name, row.username) }, t('js.assign_extend'))] : [];
      return el('li', { 'data-user': row.username }, el('strong', {}, row.username), ' ',
        el('span', { class: VERDICT[row.submission] ?? 'muted' }, state),
        ...(extra.length ? [el('small', { class: 'muted' }, ` · ${extra.join(' · ')}`)] : []), ...extend);
    });
    const now = Date.now();
    const buttons = [];
    if (!work.due || Date.parse(work.due) > now) {
      buttons.push(el('button', { class: 'write quiet', disabled: !writable, onclick: () => {
        if (confirm(t('js.assign_collect_confirm', { name: work.name }))) {
          changeAssignment(work.name, { due: new Date().toISOString() }, t('js.assign_collect_done', { name: work.name }));
        }
      } }, t('js.assign_collect_now')));
    } else if (!work.feedback || Date.parse(work.feedback) > now) {
      buttons.push(el('button', { class: 'write quiet', disabled: !writable, onclick: () => {
        if (confirm(t('js.assign_return_confirm', { name: work.name }))) {
          changeAssignment(work.name, { feedback: new Date().toISOString() }, t('js.assign_return_done', { name: work.name }));
        }
      } }, t('js.assign_return_now')));
    }
    return el('div', { class: 'card assignment', 'data-assignment': work.name },
      el('h3', {}, work.name, ' ', el('span', { class: 'tag' }, work.stage)),
      el('p', { class: 'muted' }, times.join(' · ')),
      el('p', {}, t('js.assign_handed', { n: work.handed_out, of: work.students.length }), counts ? ` · ${counts}` : ''),
      ...(work.source_missing ? [el('p', { class: 'warn' }, t('js.assign_source_missing'))] : []),
      ...(buttons.length ? [el('p', { class: 'assignment-actions' }, ...buttons)] : []),
      el('details', {}, el('summary', {}, t('js.assign_students')), el('ul', { class: 'submissions' }, ...rows)));
  }));
}

async function changeAssignment(name, changes, done) {
  // "collect now", "return feedback now", "extend": written into classroom.yaml (on the version shown)
  try {
    await edit('PATCH', `api/assignments/${encodeURIComponent(name)}`, changes, MERGE_PATCH);
    show(done, 'ok');
  } catch (error) {
    show(t('js.assign_not_changed', { name, error: error.message }), 'error', error.problems);
  }
  await refresh();
}

function extendFor(name, username) {
  const length = prompt(t('js.assign_extend_prompt', { user: username, name }), '1d');
  if (!length) return;
  changeAssignment(name, { extensions: { [username]: length.trim() } },
    t('js.assign_extend_done', { user: username, name, length: length.trim() }));
}

function showMaterial(material) {
  // classroom.yaml's course_repo: one link for the class, each student's click pulls it into their own home
  $('#material-card').hidden = !material;
  if (!material) return;
  $('#material').replaceChildren(
    el('a', { href: material.link, target: '_blank', rel: 'noopener noreferrer' }, t('js.material_open')),
    ' ', el('button', { class: 'quiet', onclick: () => navigator.clipboard?.writeText(material.link)
      .then(() => show(t('js.material_copied'), 'ok')) }, t('js.material_copy')),
    el('small', { class: 'muted' }, el('br'), t('js.material_where', { folder: material.folder, branch: material.branch })));
}

function showLesson(prewarm) {
  // The next lesson of classroom.yaml's schedule and its pre-warm, as the daemon's last pass saw them.
  $('#lesson-card').hidden = !prewarm;
  if (!prewarm) return;
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const day = (iso) => new Date(iso).toLocaleString([], { weekday: 'short', day: 'numeric', month: 'short',
    hour: '2-digit', minute: '2-digit' });
  const numbers = { wanted: prewarm.wanted ?? 0, running: prewarm.running ?? 0 };
  let text;
  if (!prewarm.lesson_start || prewarm.phase === 'none') text = t('js.lesson_none');
  else if (prewarm.phase === 'waiting') {
    text = t('js.lesson_waiting', { when: day(prewarm.lesson_start), window: clock(prewarm.window), ...numbers });
  } else if (prewarm.phase === 'lesson') text = t('js.lesson_on', { end: clock(prewarm.lesson_end), ...numbers });
  else text = t('js.lesson_warming', { when: day(prewarm.lesson_start), ...numbers });
  if (prewarm.error) text = prewarm.error;  // the daemon's pre-warm failed: say so, not "no lesson"
  const skipped = Object.keys(prewarm.skipped ?? {}).length;
  $('#lesson').replaceChildren(text, ...(skipped ? [el('small', { class: 'muted' }, el('br'),
    t('js.lesson_skipped', { n: skipped }))] : []));
}

function live() {
  // Server-sent events (api/events): a change anywhere refreshes the page within a second.
  if (!window.EventSource) return;
  // EventSource cannot send headers: the hub's XSRF check for script requests takes the token as _xsrf
  const events = new EventSource(`api/events?_xsrf=${encodeURIComponent(xsrf)}`);
  events.addEventListener('open', () => { state.live = true; document.body.dataset.live = 'true'; });
  events.addEventListener('error', () => { state.live = false; document.body.dataset.live = 'false'; });
  events.addEventListener('change', () => { if (!document.querySelector('dialog[open]')) refresh(); });
}

function refresh() {
  state.refreshed = Date.now();
  if (refreshing) {
    again = true;
    return refreshing;
  }
  refreshing = (async () => {
    try {
      await loadStudents();
    } catch (error) {
      show(error.message, 'error', error.problems);
    }
    await Promise.all([loadPlan(), loadStatus(), loadAssignments()]);
  })().finally(() => {
    refreshing = null;
    if (again) {
      again = false;
      refresh();
    }
  });
  return refreshing;
}

async function change(username, changes, what) {
  try {
    await edit('PATCH', `api/students/${username}`, changes, MERGE_PATCH);
    show(t('js.updated', { user: username, what }), 'ok');
  } catch (error) {
    show(t('js.not_changed', { user: username, error: error.message }), 'error', error.problems);
  }
  await refresh();
}

function diskWarning(person, newDisk) {
  // What a disk size change means for the student, said before it is made (null: the disk does not change).
  if (!newDisk || person.disk_quota === null || newDisk === person.disk_quota) return null;
  const shrink = newDisk < person.disk_quota;
  let text = t('js.disk_changes', { user: person.username, from: size(person.disk_quota), to: size(newDisk) });
  if (shrink) text += t('js.disk_shrink');
  const online = !shrink && state.diskChanges?.online_grow;
  if (person.server === 'running' && !online) {
    text += state.diskChanges?.resize_running === 'restart' ? t('js.disk_restart') : t('js.disk_waits');
  }
  return text;
}

async function changeQuota(person, select) {
  const overridden = person.overrides?.disk !== null && person.overrides?.disk !== undefined;
  const warning = overridden ? null : diskWarning(person, state.quotaSizes[select.value]?.disk);
  if (warning && !confirm(`${warning}\n\n${t('js.confirm_quota', { quota: select.value })}`)) {
    select.value = person.quota;
    return;
  }
  await change(person.username, { quota: select.value }, t('js.quota_changed', { quota: select.value }));
}

async function enableAgain(person) {
  // A removed person (managed here, no longer in the file): back into the file as a student, active.
  if (!confirm(t('js.confirm_enable_again', { user: person.username }))) return;
  try {
    await edit('POST', 'api/students', { username: person.username, name: person.name ?? person.username });
    show(t('js.back', { user: person.username }), 'ok');
  } catch (error) {
    show(t('js.not_added', { user: person.username, error: error.message }), 'error', error.problems);
  }
  await refresh();
}

async function disable(person) {
  if (!confirm(t('js.confirm_disable', { user: person.username }))) return;
  try {
    await edit('DELETE', `api/students/${person.username}`);
    show(t('js.disabled', { user: person.username }), 'ok');
  } catch (error) {
    show(error.message, 'error', error.problems);
  }
  await refresh();
}

async function reset(person) {
  if (!confirm(t('js.confirm_reset', { user: person.username }))) return;
  try {
    const result = await call('POST', `api/students/${person.username}/reset-password`);
    const user = person.username;
    show(result.delivery === 'email'
      ? (result.sent ? t('js.reset_mailed', { user }) : t('js.reset_queued', { user, why: result.error ?? t('js.queued') }))
      : t('js.reset_slip', { user }), 'ok');
  } catch (error) {
    show(error.message, 'error', error.problems);
  }
  await refresh();
}

function openPerson(person) {
  editing = person;
  const form = $('#person-form');
  form.reset();
  $('.problems', form).replaceChildren();
  $('#person-title').textContent = person ? t('js.edit_title', { user: person.username }) : $('#add').textContent;
  form.username.disabled = Boolean(person);
  form.quota.replaceChildren(...state.quotas.map((name) => el('option', { value: name }, name)));
  form.quota.value = state.quotas.includes('default') ? 'default' : (state.quotas[0] ?? '');
  if (person) {
    form.name.value = person.name ?? '';
    form.username.value = person.username;
    form.email.value = person.emails[0] ?? '';
    form.quota.value = person.quota ?? '';
    for (const key of ['memory', 'cpu', 'disk']) form[key].value = String(person.overrides?.[key] ?? '');
  }
  form.username.placeholder = t('js.made_from_name');
  $('#person-dialog').showModal();
}

let previewTimer = null;
function previewUsername() {
  // The username a new student will get (the same rule as the import), shown before saving.
  const form = $('#person-form');
  clearTimeout(previewTimer);
  if (editing || form.username.value.trim() || !form.name.value.trim()) return;
  previewTimer = setTimeout(async () => {
    try {
      const made = await call('GET', `api/username?name=${encodeURIComponent(form.name.value.trim())}`);
      if (!editing && !form.username.value.trim()) form.username.placeholder = t('js.will_be', { user: made.username });
    } catch (error) {
      form.username.placeholder = t('js.made_from_name');
    }
  }, 250);
}

function initial(person, key) {
  // What the form showed for this field: only fields the teacher changed are sent.
  if (key === 'name') return person.name ?? '';
  if (key === 'email') return person.emails[0] ?? '';
  if (key === 'quota') return person.quota ?? '';
  return String(person.overrides?.[key] ?? '');
}

async function savePerson(event) {
  event.preventDefault();
  const form = $('#person-form');
  const body = {};
  for (const key of ['name', 'email', 'quota', 'memory', 'cpu', 'disk']) {
    const value = form[key].value.trim();
    if (editing && value === initial(editing, key)) continue;
    body[key] = value === '' ? null : value;
  }
  try {
    let username;
    if (editing) {
      username = editing.username;
      if (Object.keys(body).length) await edit('PATCH', `api/students/${username}`, body, MERGE_PATCH);
    } else {
      if (form.username.value.trim()) body.username = form.username.value.trim();
      username = (await edit('POST', 'api/students', body)).username;
    }
    $('#person-dialog').close();
    const where = editing ? '' : (body.email ? t('js.password_mailed', { email: body.email }) : t('js.password_slip'));
    show(t('js.saved', { user: username, where }), 'ok');
    await refresh();
  } catch (error) {
    $('.problems', form).replaceChildren(el('li', {}, error.message),
      ...error.problems.map((p) => el('li', {}, p.path ? `${p.path}: ${p.message}` : p.message)));
  }
}

async function importCsv(event, dryRun) {
  event.preventDefault();
  const form = $('#import-form');
  const file = form.file.files[0];
  if (!file) return;
  const data = new FormData();
  data.append('file', file);
  try {
    const result = await edit('POST', `api/import?dry_run=${dryRun}&name_order=${encodeURIComponent(form.order.value)}`, data, null);
    const lines = result.added.map((p) => el('li', {}, `${p.username} — ${p.name}`));
    $('#import-preview').replaceChildren(el('p', {}, t(dryRun ? 'js.to_add' : 'js.added', { n: result.added.length })),
      el('ul', {}, ...lines), ...result.present.map((line) => el('p', { class: 'muted' }, line)));
    $('.problems', form).replaceChildren();
    $('#import-save').disabled = !dryRun || result.added.length === 0;
    if (!dryRun) {
      $('#import-dialog').close();
      show(t('js.imported', { n: result.added.length }), 'ok');
      await refresh();
    }
  } catch (error) {
    $('.problems', form).replaceChildren(...error.problems.map((p) => el('li', {}, p.message)), el('li', {}, error.message));
    $('#import-save').disabled = true;
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('#add').addEventListener('click', () => openPerson(null));
  $('#import').addEventListener('click', () => { $('#import-form').reset(); $('#import-preview').replaceChildren(); $('#import-dialog').showModal(); });
  $('#refresh').addEventListener('click', refresh);
  $('#person-save').addEventListener('click', savePerson);
  $('#import-check').addEventListener('click', (e) => importCsv(e, true));
  $('#import-save').addEventListener('click', (e) => importCsv(e, false));
  $('#import-form').file.addEventListener('change', () => { $('#import-save').disabled = true; });
  $('#person-form').name.addEventListener('input', previewUsername);
  $('#person-form').username.addEventListener('input', previewUsername);
  $('#import-form').order.addEventListener('change', () => { $('#import-save').disabled = true; });
  $('#slips-form').addEventListener('submit', () => setTimeout(refresh, 1500));
  refresh();
  live();
  // Pushed changes keep the page current; polling is the fallback while the stream is down, and a slow
  // refresh still catches what no file announces (a student starting a server).
  setInterval(() => {
    const idle = !document.querySelector('dialog[open]');
    if (idle && (!state.live || Date.now() - state.refreshed > 60000)) refresh();
  }, 10000);
});
