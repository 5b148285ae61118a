// Links a real Baileys companion to `wa-gateway simulate` through its control API, restarts on
// 515 as a Baileys app does, logs in, and stays up for STAY_SECONDS. Exit code 0 only if every
// step held. Usage: node companion.mjs <path to wa-gateway binary> [stay seconds]
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import makeWASocket, { WA_CERT_DETAILS, useMultiFileAuthState, DisconnectReason } from 'baileys'
import pino from 'pino'

const bin = process.argv[2]
const staySeconds = Number(process.argv[3] ?? 75)
const number = '15551230001'
const pushName = 'Baileys Judge'
const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' })

const sim = spawn(bin, ['simulate', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0'], {
	stdio: ['ignore', 'pipe', 'inherit']
})
const fail = (msg) => {
	console.error(`FAIL: ${msg}`)
	sim.kill()
	process.exit(1)
}
const first = await new Promise((resolve) => createInterface({ input: sim.stdout }).once('line', resolve))
const info = JSON.parse(first)
// The simulator has its own root; Baileys trusts this key exactly as it trusts WhatsApp's.
WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(info.root_public_key, 'base64')

const dir = mkdtempSync(join(tmpdir(), 'baileys-judge-'))
const { state, saveCreds } = await useMultiFileAuthState(dir)
const steps = { qr: 0, scanned: false, restart: false, open: 0, closes: [], history: [] }

let generation = 0
let sock
const start = () => {
	const mine = ++generation
	sock = makeWASocket({ auth: state, waWebSocketUrl: info.ws_url, logger, markOnlineOnConnect: true })
	sock.ev.on('creds.update', saveCreds)
	sock.ev.on('messaging-history.set', (h) => {
		if (mine !== generation) return
		steps.history.push(h.syncType)
		console.log(`history: syncType=${h.syncType} chats=${h.chats.length} contacts=${h.contacts.length}`)
	})
	sock.ev.on('connection.update', async (u) => {
		// Events of a socket we ended ourselves (an app restart) are expected and ignored.
		if (mine !== generation) return
		if (u.qr) {
			steps.qr++
			if (steps.scanned) return
			steps.scanned = true
			const res = await fetch(`${info.control_url}/phones/${number}/scan`, {
				method: 'POST',
				headers: { 'content-type': 'application/json' },
				body: JSON.stringify({ qr: u.qr, push_name: pushName, platform: 'android' })
			})
			console.log(`scan: HTTP ${res.status} ${await res.text()}`)
			if (!res.ok) fail('the simulator refused the scan')
		}
		if (u.connection === 'open') {
			steps.open++
			console.log(`open: me=${JSON.stringify(state.creds.me)} platform=${state.creds.platform}`)
		}
		if (u.receivedPendingNotifications) console.log('offline notifications handled')
		if (u.connection === 'close') {
			const code = u.lastDisconnect?.error?.output?.statusCode
			steps.closes.push(code)
			console.log(`close: ${code} ${u.lastDisconnect?.error?.message}`)
			if (code === DisconnectReason.restartRequired && !steps.restart) {
				steps.restart = true
				start()
			} else {
				fail(`unexpected close ${code}`)
			}
		}
	})
	return sock
}

const waitOpen = async (n) => {
	const deadline = Date.now() + 30000
	while (steps.open < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
	if (steps.open < n) fail(`not open after 30 s: ${JSON.stringify(steps)}`)
}
start()
await waitOpen(1)
console.log(`staying up for ${staySeconds} s (Baileys pings every 30 s)`)
await new Promise((r) => setTimeout(r, staySeconds * 1000))
// A restart of the app: the saved credentials log in again, with no QR.
generation++
sock.end(undefined)
await new Promise((r) => setTimeout(r, 500))
start()
await waitOpen(2)
const me = state.creds.me
// The push name reaches Baileys only inside the phone's Signal-encrypted peer message (`notify`),
// so a name here also proves Baileys decrypted the simulated phone's pkmsg.
const ok =
	steps.restart &&
	steps.open === 2 &&
	steps.qr === 1 &&
	steps.closes[0] === DisconnectReason.restartRequired &&
	me?.id?.startsWith(`${number}:`) &&
	me?.name === pushName &&
	steps.history.includes(0) && // the phone's inline INITIAL_BOOTSTRAP was decrypted and inflated
	state.creds.platform === 'android'
console.log(`result: ${JSON.stringify({ ...steps, me, platform: state.creds.platform })}`)
sim.kill()
rmSync(dir, { recursive: true, force: true })
if (!ok) fail('linking did not hold')
console.log('PASS: Baileys linked, logged in and stayed up')
process.exit(0)
