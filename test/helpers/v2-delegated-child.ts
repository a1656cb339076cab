/**
 * Run inside a v2 cgroup of its own (as systemd's Delegate=yes gives a service): opens task groups there, runs a
 * task tree in one, freezes, thaws and kills it, and prints what it saw as one JSON line.
 */
import { readLayout } from '../../node/cgroups/detect.ts'
import { openV2 } from '../../node/cgroups/v2.ts'
import { launchSettings } from '../../node/cgroups/index.ts'
import { readFileSync } from 'node:fs'
import { startTask, stats, waitForTree, TREE_SCRIPT } from './harvest-procs.ts'

const layout = await readLayout()
const groups = await openV2({ mount: layout.v2!.mount.mountPoint, ownPath: layout.v2!.ownPath, name: 'unused' })
const group = await groups.create('d1', { memoryBytes: null, cores: 1, harvested: true })
const task = startTask('d1', TREE_SCRIPT, launchSettings(groups, group, { memoryBytes: null, cores: 1, harvested: true }))
const { pids } = await waitForTree(async () => await group.pids(), task.child.pid!)
await group.freeze(1000)
const frozen = (await stats(pids)).map(s => s.state)
const events = readFileSync(group.procFiles[0].replace('cgroup.procs', 'cgroup.events'), 'utf8').replace(/\n/g, ' ').trim()
await group.thaw(1000)
await group.kill(5000)
await group.remove()
const self = readFileSync('/proc/self/cgroup', 'utf8').trim()
console.log(JSON.stringify({ describe: groups.describe, ownPath: layout.v2!.ownPath, self, procFile: group.procFiles[0], frozen, events, exit: await task.exited }))
