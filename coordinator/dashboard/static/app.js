// The dashboard page: one event stream, and the source's state fetched again whenever events say it changed.
// Events are treated as "something changed" signals, so a reset or a missed frame never leaves a stale page.
import { el, eventText, renderAgents, renderFailures, renderPeople, renderTasks, progressText } from './render.js'

const $ = id => document.getElementById(id)
const state = { me: null, jobs: [], selected: null, taskLimit: 200, lastSeq: 0, confirming: null }
const MAX_LOG = 200
let timelineLoads = 0

async function api (path, init) {
  const res = await fetch(path, { credentials: 'same-origin', ...init })
  if (res.status === 401) {
    location.assign('/login')
    throw new Error('logged out')
  }
  if (!res.ok) throw new Error(`${path}: ${res.status} ${(await res.json().catch(() => ({}))).error ?? ''}`)
  return res
}

function setLive (s, text) {
  $('live').dataset.state = s
  $('live').textContent = text
}

function mayCancel (job) {
  if (job.state !== 'active' || state.me == null) return false
  return state.me.role === 'admin' || (state.me.role === 'submitter' && state.me.peerId === job.owner)
}

function jobActions (job) {
  const show = el('button', { type: 'button', 'aria-pressed': String(job.jobId === state.selected), onclick: () => select(job.jobId) }, `Show job ${job.jobId}`)
  if (!mayCancel(job)) return [show]
  if (state.confirming === job.jobId) {
    return [show, ' ',
      el('button', { type: 'button', class: 'danger', onclick: () => cancelJob(job.jobId) }, `Yes, cancel job ${job.jobId}`), ' ',
      el('button', { type: 'button', onclick: () => { state.confirming = null; renderJobs() } }, 'Keep it')]
  }
  return [show, ' ', el('button', { type: 'button', class: 'danger', onclick: () => { state.confirming = job.jobId; renderJobs() } }, 'Cancel…')]
}

async function cancelJob (jobId) {
  state.confirming = null
  try {
    await api(`/api/jobs/${jobId}/cancel`, { method: 'POST' })
  } catch (err) {
    $('job-summary').textContent = String(err.message)
  }
  refresh()
}

function renderJobs () {
  renderPeople($('people'), state.jobs, state.selected, jobActions)
}

function select (jobId) {
  state.selected = jobId
  state.taskLimit = 200
  history.replaceState(null, '', `#job-${jobId}`)
  renderJobs()
  refresh()
  $('job').focus?.()
}

async function loadOverview () {
  const data = await (await api('/api/overview')).json()
  renderAgents($('agents'), $('mesh-summary'), data.agents)
  state.jobs = data.jobs
  if (state.selected == null || !data.jobs.some(j => j.jobId === state.selected)) {
    const fromHash = Number((/^#job-(\d+)$/.exec(location.hash) ?? [])[1])
    const pick = data.jobs.find(j => j.jobId === fromHash) ?? data.jobs.find(j => j.state === 'active') ?? [...data.jobs].sort((a, b) => b.submittedAt - a.submittedAt)[0]
    state.selected = pick?.jobId ?? null
  }
  renderJobs()
}

async function loadJob () {
  const id = state.selected
  const section = $('job')
  if (id == null) { section.hidden = true; return }
  const job = state.jobs.find(j => j.jobId === id)
  section.hidden = false
  $('job-h').textContent = `Job ${id}${job ? ` ${job.name}` : ''}`
  $('job-summary').textContent = job ? `${job.state}; ${progressText(job)}` : ''
  const [tasks, failures] = await Promise.all([
    api(`/api/jobs/${id}/tasks?after=0&limit=${state.taskLimit}`).then(r => r.json()),
    api(`/api/jobs/${id}/failures`).then(r => r.json())
  ])
  renderTasks($('tasks'), tasks.tasks, Date.now())
  $('more-tasks').hidden = tasks.next == null || tasks.tasks.length < state.taskLimit
  renderFailures($('failures'), failures)
  await loadTimeline(id, job)
}

async function loadTimeline (id, job) {
  // An <img>, not inline SVG: the picture cannot run script or touch the page, whatever names it holds.
  const img = $('timeline')
  await new Promise(resolve => {
    img.onload = resolve
    img.onerror = resolve
    img.src = `/api/jobs/${id}/timeline.svg?seq=${state.lastSeq}&n=${++timelineLoads}`
  })
  img.alt = job ? `Timeline of job ${id}: ${progressText(job)}` : `Timeline of job ${id}`
  img.dataset.seq = String(state.lastSeq)
}

// One refresh at a time, at most one a second: events arriving meanwhile ask for one more afterwards, so a
// busy mesh costs the coordinator one snapshot per second per page, not one per event.
const MIN_REFRESH_MS = 1000
let running = false
let again = false
async function refresh () {
  if (running) { again = true; return }
  running = true
  try {
    do {
      again = false
      const started = Date.now()
      const seq = state.lastSeq
      await loadOverview()
      await loadJob()
      document.body.dataset.shownSeq = String(seq)
      if (again) await new Promise(resolve => setTimeout(resolve, Math.max(0, MIN_REFRESH_MS - (Date.now() - started))))
    } while (again)
  } catch (err) {
    if (err.message !== 'logged out') setLive('reconnecting', `error: ${err.message}`)
  } finally {
    running = false
  }
}

function logEvent (e) {
  const log = $('event-log')
  log.prepend(el('li', { dataset: { seq: e.seq, type: e.type } }, eventText(e)))
  while (log.children.length > MAX_LOG) log.lastElementChild.remove()
}

function connect () {
  const source = new EventSource('/api/events')
  source.addEventListener('hello', m => {
    const { seq, resumed } = JSON.parse(m.data)
    setLive('live', `live (event ${seq})`)
    if (!resumed) { state.lastSeq = seq; refresh() }
  })
  source.addEventListener('reset', m => {
    state.lastSeq = JSON.parse(m.data).seq
    setLive('live', `live (reloaded at event ${state.lastSeq})`)
    refresh()
  })
  source.addEventListener('message', m => {
    const e = JSON.parse(m.data)
    state.lastSeq = e.seq
    document.body.dataset.lastSeq = String(e.seq)
    logEvent(e)
    setLive('live', `live (event ${e.seq})`)
    refresh()
  })
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      setLive('closed', 'disconnected: reload the page or log in again')
    } else {
      setLive('reconnecting', 'reconnecting…')
    }
  })
}

async function start () {
  state.me = await (await api('/api/me')).json()
  $('me').textContent = `${state.me.name} (${state.me.role})`
  $('job').tabIndex = -1
  $('more-tasks').addEventListener('click', () => { state.taskLimit += 200; refresh() })
  connect()
}

start().catch(err => { if (err.message !== 'logged out') setLive('closed', `error: ${err.message}`) })
