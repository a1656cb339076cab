/**
 * The login form: a plain HTML form posting the one-time code (no script, so it works before any session
 * exists and keeps the code out of URLs and history). Messages are fixed texts, escaped all the same.
 */
import { escapeXml } from '../../shared/report/timeline-svg.ts'

export function loginPage (message: string | null): string {
  const note = message == null ? '' : `<p class="error" role="alert">${escapeXml(message)}</p>`
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meshfarm dashboard: log in</title>
<link rel="stylesheet" href="/static/style.css">
</head>
<body class="login">
<main>
<h1>meshfarm dashboard</h1>
${note}
<form method="post" action="/login">
<label for="code">One-time login code</label>
<input id="code" name="code" type="password" autocomplete="one-time-code" required maxlength="64" spellcheck="false" autofocus>
<button type="submit">Log in</button>
</form>
<p>Get a code with <code>meshfarm dashboard</code> on a machine of the mesh; each code works once, for a few minutes.</p>
</main>
</body>
</html>
`
}
