// The raw TCP baseline's receiver: accepts one connection, writes what arrives to a file, exits when done.
// Usage: node tcp-sink.mjs DEST  (prints `port N`, then `done` when the file is closed)
import { createServer } from 'node:net'
import { createWriteStream } from 'node:fs'
import { pipeline } from 'node:stream/promises'

const server = createServer(async socket => {
  server.close()
  await pipeline(socket, createWriteStream(process.argv[2]))
  console.log('done')
})
server.listen(0, '127.0.0.1', () => { console.log(`port ${server.address().port}`) })
