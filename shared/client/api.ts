/** The public TypeScript API: `import { connect } from 'meshfarm'`. */
export { connect, MeshClient, type ConnectOptions, type SubmitProgress } from './client.ts'
export { parseJobFile, parseJobYaml, parseTasklist, type ParsedJob, type SpecDefaults } from './spec.ts'
export { MeshfarmError, isMeshfarmError } from '../util/errors.ts'
export type { JobSummary, TaskRecord, AgentSummary, TaskState, JobState } from '../protocol/messages.ts'
