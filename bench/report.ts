/** One line of the benchmark's table: a meshfarm number, what it is compared with, and the goal. */
export interface Row {
  measure: string
  unit: string
  /** The median of the runs. */
  meshfarm: number
  min?: number
  max?: number
  baselineName?: string
  baseline?: number
  /** meshfarm relative to the baseline, oriented so that more is better for meshfarm. */
  ratio?: number
  goal?: string
  met?: boolean
}
