// Builds the page's parts from the API's data. Text goes in through textContent only, never as HTML,
// so names from the mesh (hosts, jobs, stderr) cannot inject markup.

/** An element with attributes (null/false skipped) and children (strings become text nodes). */
export function el (tag, attrs = {}, ...children) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v)
    else if (k === 'dataset') Object.assign(e.dataset, v)
    else e.setAttribute(k, v === true ? '' : String(v))
  }
  for (const c of children.flat()) if (c != null && c !== false) e.append(c instanceof Node ? c : String(c))
  return e
}

export function shortId (peerId) {
  return typeof peerId === 'string' ? peerId.slice(-8) : ''
}

export function ownerOf (job) {
  return job.ownerName ?? shortId(job.owner)
}

export function ago (ms) {
  if (ms < 1500) return 'now'
  if (ms < 90_000) return `${Math.round(ms / 1000)} s ago`
  if (ms < 5_400_000) return `${Math.round(ms / 60_000)} min ago`
  return `${Math.round(ms / 3_600_000)} h ago`
}

export function seconds (ms) {
  return ms == null ? '' : `${(ms / 1000).toFixed(2)} s`
}

function head (table, cols) {
  table.tHead.replaceChildren(el('tr', {}, cols.map(c => el('th', { scope: 'col', class: c.num ? 'num' : null }, c.label))))
}

/** Desktop harvesting in words: lent or not, whether the owner is there, and why. */
export function harvestText (h) {
  if (h == null) return ''
  const owner = h.ownerPresent === true ? 'owner present' : h.ownerPresent === false ? 'owner away' : null
  return [h.lending ? 'lending' : 'not lending', owner, h.reason].filter(Boolean).join(', ')
}

/** `lastSeen` is how long ago (ms) the coordinator last heard from the agent, as `meshfarm peers` shows it. */
export function renderAgents (table, summary, agents) {
  const has = pick => agents.some(a => pick(a) != null && pick(a) !== '')
  const owner = a => a.name
  const harvest = a => a.status?.harvest
  const bridge = a => (a.backend != null && a.backend !== 'local') || (a.status?.notes?.length ?? 0) > 0 ? a : null
  const cols = [
    { label: 'host' }, { label: 'state' }, { label: 'load', num: true }, { label: 'cores', num: true },
    { label: 'memory', num: true }, { label: 'GPUs' }, has(owner) && { label: 'owner' },
    has(harvest) && { label: 'harvest' }, has(bridge) && { label: 'bridge allocations' },
    { label: 'labels' }, { label: 'seen' }
  ].filter(Boolean)
  head(table, cols)
  const rows = agents.map(a => {
    const load = el('td', { class: 'num' },
      el('meter', { min: 0, max: Math.max(1, a.slots), value: a.running, 'aria-hidden': 'true' }),
      ` ${a.running} of ${a.slots} slots`, a.suspended > 0 ? ` (${a.suspended} suspended)` : '')
    const gpus = a.gpus.length === 0 ? 'none' : `${a.gpus.length}: ${a.gpus.map(g => `${g.index} ${g.model}`).join(', ')}`
    const notes = a.status?.notes ?? []
    return el('tr', { dataset: { peer: a.peerId } },
      el('th', { scope: 'row' }, a.hostname, a.runsAsRoot ? ' (root)' : ''),
      el('td', { class: `state state-${a.state}` }, a.state),
      load,
      el('td', { class: 'num' }, a.cores),
      el('td', { class: 'num' }, `${(a.memoryMb / 1024).toFixed(1)} GiB`),
      el('td', {}, gpus),
      has(owner) && el('td', {}, a.name ?? ''),
      has(harvest) && el('td', {}, harvestText(a.status?.harvest)),
      has(bridge) && el('td', {}, a.backend != null && a.backend !== 'local' ? `${a.backend}${notes.length > 0 ? ': ' : ''}` : '',
        notes.slice(0, 3).join('; '), notes.length > 3 ? ` (+${notes.length - 3} more)` : ''),
      el('td', {}, Object.entries(a.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')),
      el('td', {}, ago(a.lastSeen))
    )
  })
  table.tBodies[0].replaceChildren(...rows)
  const up = agents.filter(a => a.state === 'up')
  summary.textContent = agents.length === 0
    ? 'No agent has joined yet.'
    : `${agents.length} agent${agents.length === 1 ? '' : 's'} (${up.length} up): ${up.reduce((n, a) => n + a.running, 0)} of ${up.reduce((n, a) => n + a.slots, 0)} slots busy, ${up.reduce((n, a) => n + a.cores, 0)} cores, ${up.reduce((n, a) => n + a.gpus.length, 0)} GPUs.`
}

export function progressText (job) {
  const c = job.counts
  const finished = c.done + c.failed + c.cancelled
  const parts = [`${c.done} done`]
  if (c.failed > 0) parts.push(`${c.failed} failed`)
  if (c.cancelled > 0) parts.push(`${c.cancelled} cancelled`)
  const busy = c.running + c.staging
  const more = [busy > 0 && `${busy} running`, c.suspended > 0 && `${c.suspended} suspended`, c.queued > 0 && `${c.queued} queued`, c.held > 0 && `${c.held} held`]
  return `${finished} of ${job.total} finished (${parts.join(', ')})${more.filter(Boolean).map(m => `, ${m}`).join('')}`
}

/** Jobs grouped by person, newest first; `actions` builds the buttons of one job. */
export function renderPeople (root, jobs, selected, actions) {
  if (jobs.length === 0) {
    root.replaceChildren(el('p', {}, 'No jobs yet.'))
    return
  }
  const groups = new Map()
  for (const j of [...jobs].sort((a, b) => b.submittedAt - a.submittedAt)) {
    const who = ownerOf(j)
    if (!groups.has(who)) groups.set(who, [])
    groups.get(who).push(j)
  }
  const parts = [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([who, list]) => {
    const active = list.filter(j => j.state === 'active').length
    const table = el('table', { class: 'jobs' },
      el('caption', { class: 'sr-only' }, `Jobs of ${who}`),
      el('thead', {}, el('tr', {}, ['job', 'name', 'state', 'progress', ''].map(h => el('th', { scope: 'col' }, h)))),
      el('tbody', {}, list.map(j => {
        const finished = j.counts.done + j.counts.failed + j.counts.cancelled
        return el('tr', { class: j.jobId === selected ? 'selected' : null, dataset: { job: j.jobId }, 'aria-current': j.jobId === selected ? 'true' : null },
          el('td', { class: 'num' }, j.jobId),
          el('th', { scope: 'row' }, j.name, j.label ? ` (${j.label})` : ''),
          el('td', { class: `state state-${j.state}` }, j.state),
          el('td', { class: 'progress' },
            el('progress', { max: Math.max(1, j.total), value: finished, 'aria-label': `job ${j.jobId} progress` }), ' ', el('span', { class: 'progress-text' }, progressText(j))),
          el('td', {}, actions(j)))
      })))
    return el('div', { class: 'person', dataset: { person: who } },
      el('h3', {}, who, ` — ${list.length} job${list.length === 1 ? '' : 's'}, ${active} active`), table)
  })
  root.replaceChildren(...parts)
}

export function renderTasks (table, tasks, now) {
  head(table, [{ label: 'task', num: true }, { label: 'name' }, { label: 'state' }, { label: 'host' },
    { label: 'started' }, { label: 'duration', num: true }, { label: 'exit', num: true }, { label: 'attempts', num: true }, { label: 'why' }])
  table.tBodies[0].replaceChildren(...tasks.map(t => {
    const running = t.state === 'running' && t.start != null
    const dur = t.durationMs ?? (running ? now - Date.parse(t.start) : null)
    return el('tr', { dataset: { task: t.index, state: t.state } },
      el('td', { class: 'num' }, t.index),
      el('th', { scope: 'row' }, t.name),
      el('td', { class: `state state-${t.state}` }, t.state),
      el('td', {}, t.host ?? ''),
      el('td', {}, t.start != null ? new Date(t.start).toLocaleTimeString() : ''),
      el('td', { class: 'num' }, seconds(dur), running ? ' so far' : ''),
      el('td', { class: 'num' }, t.exitCode ?? t.signal ?? ''),
      el('td', { class: 'num' }, t.attempts),
      el('td', {}, t.why ?? t.failure?.message ?? ''))
  }))
}

export function renderFailures (root, data) {
  if (data.total === 0) {
    root.replaceChildren()
    return
  }
  root.replaceChildren(...[
    el('h3', {}, `Failures (${data.total})`),
    ...data.failures.map(f => el('div', { class: 'failure', dataset: { task: f.index } },
      el('p', {}, el('strong', {}, `task ${f.index} ${f.name}`), ` on ${f.host ?? 'no host'}: `,
        f.exitCode != null ? `exit code ${f.exitCode}` : f.signal != null ? `signal ${f.signal}` : (f.failure?.kind ?? 'failed'),
        f.failure?.message ? ` — ${f.failure.message}` : '', ` (${f.attempts} attempt${f.attempts === 1 ? '' : 's'})`),
      f.missingOutputs?.length > 0 ? el('p', {}, `outputs never written: ${f.missingOutputs.slice(0, 10).join(', ')}`) : null,
      f.stderrTail ? el('pre', { class: 'tail', 'aria-label': `end of stderr of task ${f.index}` }, f.stderrTail) : null)),
    data.total > data.failures.length ? el('p', {}, `… and ${data.total - data.failures.length} more.`) : null
  ].filter(x => x != null))
}

export function eventText (e) {
  const t = new Date(e.time).toLocaleTimeString()
  const where = [e.jobId != null ? `job ${e.jobId}` : null, e.index != null ? `task ${e.index}` : null, e.host ? `on ${e.host}` : null].filter(Boolean).join(' ')
  const data = e.data ? Object.entries(e.data).map(([k, v]) => `${k}=${v}`).join(' ') : ''
  return `#${e.seq} ${t} ${e.type} ${where} ${data}`.trim()
}
