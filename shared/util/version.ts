/** The meshfarm version, reported by ping and peers. */
export const VERSION = '0.1.0'
