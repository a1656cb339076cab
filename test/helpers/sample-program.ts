/** A commander program shaped like meshfarm's CLI (nested commands, value flags, choices), for completion tests. */
import { Command, Option } from 'commander'

export function sampleProgram (): Command {
  const p = new Command().name('meshfarm').description('mesh').version('0.1.0').option('--home <dir>', 'state folder')
  p.command('submit').description('submit a job').argument('<file>', 'job file').option('--wait', 'follow the job')
    .option('--cores <n>', 'cores per task').addOption(new Option('--layout <layout>', 'results layout').choices(['per-task', 'flat', 'ictasks']))
  p.command('invite').description('print an invite: one-time').addOption(new Option('--role <role>', 'what the peer may do').choices(['agent', 'submitter', 'admin']))
  const access = p.command('access').description('the access list')
  access.command('list').description('peers and roles').option('--json', 'machine-readable output')
  access.command('remove').description('take a peer off').argument('<peer>', 'peer id')
  p.command('agent').description("lend this machine").option('--install-service', 'write and enable a systemd unit').option('--label <key=value>', 'a label')
  return p
}
