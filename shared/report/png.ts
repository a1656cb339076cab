/**
 * SVG to PNG with resvg (Rust, shipped as a prebuilt binary inside its npm package: no browser, no download
 * at install time). Text uses the machine's fonts; DejaVu Sans is Debian's default.
 */
import { Resvg } from '@resvg/resvg-js'

export function svgToPng (svg: string, opts: { scale?: number } = {}): Buffer {
  const resvg = new Resvg(svg, {
    fitTo: opts.scale != null ? { mode: 'zoom', value: opts.scale } : { mode: 'original' },
    background: '#ffffff',
    font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' }
  })
  return resvg.render().asPng()
}
