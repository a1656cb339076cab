import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compileCoordinator, compileDashboardPort, DEFAULTS } from '../../bin/config.ts'

test('--dashboard [PORT]: absent none, bare the default port, 0 any free port; anything else one line', () => {
  assert.equal(compileDashboardPort(undefined), null)
  assert.equal(compileDashboardPort(true), DEFAULTS.dashboardPort)
  assert.equal(compileDashboardPort('0'), 0)
  assert.equal(compileDashboardPort('8080'), 8080)
  assert.equal(compileDashboardPort('65535'), 65535)
  for (const bad of ['65536', '-1', '80.5', '', ' 80', '0x50', '1e3', 'abc', '123456']) {
    assert.throws(() => compileDashboardPort(bad), (err: Error & { code?: string }) => err.code === 'BAD_ARGUMENT' &&
      err.message === `--dashboard: must be a port number from 0 to 65535 (0: any free port), got ${JSON.stringify(bad)}`, bad)
  }
  assert.equal(compileCoordinator({ listen: [], dashboard: '0' }, {}).dashboardPort, 0)
  assert.equal(compileCoordinator({ listen: [] }, {}).dashboardPort, null)
})
