import { chromium } from 'playwright-core'
import { startDashboard } from '/work/wt/dashboard/coordinator/dashboard/server.ts'
import { MemoryMesh } from '/work/wt/dashboard/test/helpers/memory-mesh.ts'
import { chromiumArgs } from '/work/wt/dashboard/test/browser/chromium.ts'
const mesh = new MemoryMesh(Date.now())
mesh.addAgent('alpha')
const d = await startDashboard({ source: mesh, log: l => console.log(l) })
const b = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: chromiumArgs() })
const p = await b.newPage()
p.on('request', r => console.log('>', r.method(), r.url(), JSON.stringify(r.headers())))
p.on('response', r => console.log('<', r.status(), r.url()))
p.on('console', m => console.log('console', m.text()))
await p.goto(d.url)
await p.fill('#code', mesh.login({ peerId: 'x', name: 'ana', role: 'admin' }))
await p.click('button[type=submit]')
await p.waitForTimeout(2000)
console.log(p.url(), (await p.content()).slice(0, 300))
await b.close(); await d.close()
