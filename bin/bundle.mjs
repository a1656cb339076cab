#!/usr/bin/env node
/**
 * Builds the CLI into one file, dist/meshfarm.mjs, at install time (npm's postinstall; runs on Node 20 too):
 * starting meshfarm then loads one module instead of about a thousand (libp2p, TypeBox, the TypeScript
 * sources), and `meshfarm status` answers in a fraction of the time. bin/meshfarm uses the bundle only while it
 * is newer than every source file, so an edited checkout runs its sources. A failed build is a note, not a
 * failed install: bin/meshfarm then runs the sources.
 *
 *   node bin/bundle.mjs [--out DIR]
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const outIndex = process.argv.indexOf('--out')
const outDir = resolve(outIndex > 0 ? process.argv[outIndex + 1] : join(root, 'dist'))

/** Packages loaded at run time from node_modules: native addons, and what is too large or optional to inline. */
export const EXTERNAL = ['@resvg/resvg-js', 'msgpackr-extract', 'playwright-core', 'systeminformation']

/**
 * Each source file keeps its own import.meta.url (the launcher's C sources, the dashboard's static files, the
 * CLI's own path are found next to the file that names them), as a URL relative to the bundle: the bundle and
 * the sources may move together.
 */
const ownUrls = (chunkDir) => ({
  name: 'own-import-meta-url',
  setup (build) {
    build.onLoad({ filter: /\.[cm]?ts$/ }, args => {
      if (args.path.includes(`${join('node_modules', '')}`)) return undefined
      const text = readFileSync(args.path, 'utf8')
      if (!text.includes('import.meta.url')) return { contents: text, loader: 'ts' }
      const rel = relative(chunkDir, args.path).split('\\').join('/')
      return { contents: text.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: 'ts' }
    })
  }
})

/**
 * The entry: enables Node's compile cache (the bundle is parsed once, then read back compiled), then loads the
 * CLI, whose commands load their own chunks (a service's code only when it starts).
 */
const ENTRY_MODULE = `// Built by bin/bundle.mjs from bin/meshfarm.ts; bin/meshfarm runs this while it is newer than the sources.
import module from 'node:module'
import { homedir } from 'node:os'
import { join } from 'node:path'
try { module.enableCompileCache?.(join(homedir(), '.cache', 'meshfarm', 'node-compile-cache')) } catch {}
await import('./cli/main.mjs')
`

export async function buildBundle () {
  const { build } = await import('esbuild')
  // Built beside, then swapped in whole: a CLI started meanwhile runs the old bundle or the sources, never half.
  const tmp = join(outDir, `.build-${process.pid}`)
  rmSync(tmp, { recursive: true, force: true })
  mkdirSync(join(tmp, 'cli'), { recursive: true })
  await build({
    // The CLI's main(), called for the bundle (bin/meshfarm.ts calls it only when it is itself the entry).
    stdin: { contents: "import { main } from './bin/meshfarm.ts'\nawait main(process.argv)\n", resolveDir: root, sourcefile: 'main.ts', loader: 'ts' },
    outdir: join(tmp, 'cli'),
    entryNames: 'main',
    chunkNames: '[name]-[hash]',
    outExtension: { '.js': '.mjs' },
    splitting: true,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node22',
    external: EXTERNAL,
    plugins: [ownUrls(join(outDir, 'cli'))],
    // CommonJS dependencies inside an ES module call require(): give them one.
    banner: { js: "import { createRequire as __mfRequire } from 'node:module'; const require = __mfRequire(import.meta.url);" },
    logLevel: 'error'
  })
  writeFileSync(join(tmp, 'meshfarm.mjs'), ENTRY_MODULE)
  rmSync(join(outDir, 'cli'), { recursive: true, force: true })
  renameSync(join(tmp, 'cli'), join(outDir, 'cli'))
  renameSync(join(tmp, 'meshfarm.mjs'), join(outDir, 'meshfarm.mjs'))
  rmSync(tmp, { recursive: true, force: true })
  return join(outDir, 'meshfarm.mjs')
}

if (process.argv[1] != null && pathToFileURL(resolve(process.argv[1])).href === import.meta.url) {
  try {
    const out = await buildBundle()
    console.log(`meshfarm: built ${relative(process.cwd(), out) || out}`)
  } catch (err) {
    rmSync(join(outDir, 'meshfarm.mjs'), { force: true })
    rmSync(join(outDir, 'cli'), { recursive: true, force: true })
    console.log(`meshfarm: no bundle (${String(err?.message ?? err).split('\n')[0]}); the CLI runs its TypeScript sources`)
  }
}
