import { test } from 'node:test'
import assert from 'node:assert/strict'
import { allowedHosts, checkHost, checkRequest, mayDo, parseJobId, parseLastEventId, type RequestFacts } from '../../coordinator/dashboard/guard.ts'

const hosts = allowedHosts(8080)

test('Host: only the loopback names with our port pass (DNS rebinding)', () => {
  for (const ok of ['127.0.0.1:8080', 'localhost:8080', 'LOCALHOST:8080', '[::1]:8080']) assert.equal(checkHost(ok, hosts), null, ok)
  for (const bad of ['evil.example:8080', 'evil.example', '127.0.0.1', '127.0.0.1:8081', 'localhost.:8080', '127.0.0.2:8080',
    '0.0.0.0:8080', '[::ffff:127.0.0.1]:8080', 'localhost:8080.evil.example', 'user@localhost:8080', ' localhost:8080', '127.0.0.1:08080']) {
    assert.equal(checkHost(bad, hosts)?.status, 421, bad)
  }
  assert.equal(checkHost(undefined, hosts)?.status, 400)
  assert.equal(checkHost('', hosts)?.status, 400)
})

const facts = (o: Partial<RequestFacts>): RequestFacts => ({ method: 'GET', path: '/', host: '127.0.0.1:8080', origin: undefined, secFetchSite: undefined, ...o })

test('state changes need our own Origin and same-origin fetch metadata, DELETE included', () => {
  for (const method of ['POST', 'DELETE']) {
    assert.equal(checkRequest(facts({ method, origin: 'http://127.0.0.1:8080', secFetchSite: 'same-origin' })), null)
    assert.equal(checkRequest(facts({ method, origin: 'http://127.0.0.1:8080' })), null, 'no fetch metadata (not a browser) is fine')
    assert.equal(checkRequest(facts({ method }))?.status, 403, 'no Origin')
    assert.equal(checkRequest(facts({ method, origin: 'http://evil.example' }))?.status, 403)
    assert.equal(checkRequest(facts({ method, origin: 'null' }))?.status, 403, 'opaque origin (sandboxed frame, file:)')
    assert.equal(checkRequest(facts({ method, origin: 'http://localhost:8080' }))?.status, 403, 'an origin other than the Host asked')
    assert.equal(checkRequest(facts({ method, origin: 'https://127.0.0.1:8080' }))?.status, 403)
    assert.equal(checkRequest(facts({ method, origin: 'http://127.0.0.1:8080', secFetchSite: 'same-site' }))?.status, 403)
    assert.equal(checkRequest(facts({ method, origin: 'http://127.0.0.1:8080', secFetchSite: 'cross-site' }))?.status, 403)
  }
  assert.equal(checkRequest(facts({ method: 'POST', host: 'LOCALHOST:8080', origin: 'http://localhost:8080' })), null)
})

test('methods other than GET, HEAD, POST and DELETE are refused before routing', () => {
  for (const method of ['PUT', 'PATCH', 'OPTIONS', 'TRACE', 'CONNECT', 'PROPFIND']) {
    assert.equal(checkRequest(facts({ method, origin: 'http://127.0.0.1:8080' }))?.status, 405, method)
  }
  assert.equal(checkRequest(facts({ method: 'HEAD', path: '/api/events' }))?.status, 405, 'HEAD would hold an event stream')
  assert.equal(checkRequest(facts({ method: 'HEAD', path: '/login' })), null)
})

test('API reads refuse cross-site fetch metadata; pages may be opened from anywhere', () => {
  assert.equal(checkRequest(facts({ path: '/api/overview', secFetchSite: 'cross-site' }))?.status, 403)
  assert.equal(checkRequest(facts({ path: '/api/events', secFetchSite: 'same-site' }))?.status, 403)
  assert.equal(checkRequest(facts({ path: '/api/overview', secFetchSite: 'same-origin' })), null)
  assert.equal(checkRequest(facts({ path: '/api/overview' })), null)
  assert.equal(checkRequest(facts({ path: '/', secFetchSite: 'cross-site' })), null)
  assert.equal(checkRequest(facts({ path: '/login', secFetchSite: 'none' })), null)
})

test('roles: readers read, submitters cancel their own jobs, admins any', () => {
  const job = { kind: 'cancel' as const, owner: 'peer-a' }
  assert.equal(mayDo({ peerId: 'peer-a', role: 'admin' }, job), null)
  assert.equal(mayDo({ peerId: 'peer-z', role: 'admin' }, job), null)
  assert.equal(mayDo({ peerId: 'peer-a', role: 'submitter' }, job), null)
  assert.equal(mayDo({ peerId: 'peer-b', role: 'submitter' }, job)?.status, 403)
  assert.equal(mayDo({ peerId: 'peer-a', role: 'reader' }, job)?.status, 403, 'a reader cannot cancel even their own job')
  assert.equal(mayDo({ peerId: 'peer-a', role: 'superuser' as never }, job)?.status, 403, 'an unknown role gets nothing')
})

test('job ids and Last-Event-ID: plain non-negative integers only', () => {
  assert.equal(parseJobId('1'), 1)
  assert.equal(parseJobId('123456789012345'), 123456789012345)
  for (const bad of [undefined, '', '0', '-1', '01', '1.5', '1e3', '0x10', ' 1', '1 ', 'NaN', 'Infinity', '9999999999999999', '1;DROP', '%31']) {
    assert.equal(parseJobId(bad), null, String(bad))
  }
  assert.equal(parseLastEventId('0'), 0)
  assert.equal(parseLastEventId(' 42 '), 42)
  for (const bad of [undefined, '', '-1', 'abc', '1.0', '99999999999999999', '4e2']) assert.equal(parseLastEventId(bad), null, String(bad))
})
