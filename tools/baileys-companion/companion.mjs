// Links a real Baileys companion to `wa-gateway simulate` through its control API, restarts on
// 515 as a Baileys app does, logs in, and stays up for STAY_SECONDS; then exchanges texts both
// ways with a simulated user, and both ways with our client (`wa-gateway chat`) linked to
// another account; then a PN and a LID group of all three, where each sends one text and every
// other member must read it. Exit code 0 only if every step held.
// Usage: node companion.mjs <path to wa-gateway binary> [stay seconds]
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import makeWASocket, { WA_CERT_DETAILS, useMultiFileAuthState, DisconnectReason } from 'baileys'
import pino from 'pino'
import { routeWhatsAppCdn, simulatorTrusted } from './lib.mjs'

const bin = process.argv[2]
const staySeconds = Number(process.argv[3] ?? 75)
const number = '15551230001'
const pushName = 'Baileys Judge'
const logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' })

// The simulator runs in the first run of this script, which runs it again trusting its CA.
const info = await simulatorTrusted(fileURLToPath(import.meta.url), bin, 'COMPANION_JUDGE_SIM')
const fail = (msg) => {
	console.error(`FAIL: ${msg}`)
	process.exit(1)
}
routeWhatsAppCdn(info.cdn_url)
// The simulator has its own root; Baileys trusts this key exactly as it trusts WhatsApp's.
WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(info.root_public_key, 'base64')

const dir = mkdtempSync(join(tmpdir(), 'baileys-judge-'))
const { state, saveCreds } = await useMultiFileAuthState(dir)
const steps = { qr: 0, scanned: false, restart: false, open: 0, closes: [], history: [] }
const received = []
const sent = new Map()

let generation = 0
let sock
// Reach-out time-lock states Baileys reported (from the simulator's w:mex notification/answer).
const timelocks = []
const start = () => {
	const mine = ++generation
	sock = makeWASocket({
		auth: state,
		waWebSocketUrl: info.ws_url,
		logger,
		markOnlineOnConnect: true,
		// Resends for retry receipts come from here (Baileys keeps no store of its own).
		getMessage: async (key) => sent.get(key.id)
	})
	sock.ev.on('creds.update', saveCreds)
	sock.ev.on('messages.upsert', ({ messages }) => {
		if (mine !== generation) return
		for (const m of messages) {
			const text = m.message?.conversation ?? m.message?.extendedTextMessage?.text
			if (text) received.push({ id: m.key.id, from: m.key.remoteJid, fromMe: m.key.fromMe, text })
		}
	})
	sock.ev.on('messaging-history.set', (h) => {
		if (mine !== generation) return
		steps.history.push(h.syncType)
		console.log(`history: syncType=${h.syncType} chats=${h.chats.length} contacts=${h.contacts.length}`)
	})
	sock.ev.on('connection.update', async (u) => {
		// Events of a socket we ended ourselves (an app restart) are expected and ignored.
		if (mine !== generation) return
		if (u.reachoutTimeLock) timelocks.push(u.reachoutTimeLock)
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
if (!ok) fail('linking did not hold')
console.log('PASS: Baileys linked, logged in and stayed up')

// ---- messaging ----
const control = async (method, path, body) => {
	const res = await fetch(`${info.control_url}${path}`, {
		method,
		headers: { 'content-type': 'application/json' },
		body: body === undefined ? undefined : JSON.stringify(body)
	})
	const text = await res.text()
	if (!res.ok) fail(`${method} ${path}: HTTP ${res.status} ${text}`)
	return JSON.parse(text)
}
const until = async (what, pred, seconds = 20) => {
	const deadline = Date.now() + seconds * 1000
	while (Date.now() < deadline) {
		const v = await pred()
		if (v) return v
		await new Promise((r) => setTimeout(r, 200))
	}
	fail(`timed out waiting for ${what}`)
}
const sendFromBaileys = async (jid, text) => {
	const m = await sock.sendMessage(jid, { text })
	sent.set(m.key.id, m.message)
	return m.key.id
}

// 1. A simulated user (a phone and a companion, real Signal peers) and Baileys, both ways.
const user = '15551230002'
await control('POST', `/phones/${user}/devices`, { count: 2 })
const fromUser = 'hello from a simulated user ✓'
const { id: userMsg } = await control('POST', `/phones/${user}/send`, { to: number, text: fromUser })
await until('Baileys to decrypt the simulated user', () => received.find((r) => r.text === fromUser))
console.log(`user → Baileys: ${userMsg} decrypted`)
const toUser = 'hello from Baileys ✓'
const baileysMsg = await sendFromBaileys(`${user}@s.whatsapp.net`, toUser)
const got = await until('the simulated user to decrypt Baileys', async () =>
	(await control('GET', `/phones/${user}/messages`)).find((m) => m.id === baileysMsg && m.devices === 2)
)
if (got.text !== toUser) fail(`the user read ${JSON.stringify(got.text)}`)
console.log(`Baileys → user: ${baileysMsg} decrypted by both devices`)

// 2. Our client (another account, linked through the same control API) and Baileys, both ways.
const ours = '15551230003'
const chat = spawn(bin, ['chat', '--ws', info.ws_url, '--root', info.root_public_key, '--ca', info.ca_cert], {
	stdio: ['pipe', 'pipe', 'inherit']
})
const lines = []
createInterface({ input: chat.stdout }).on('line', async (l) => {
	const v = JSON.parse(l)
	lines.push(v)
	if (v.qr) await control('POST', `/phones/${ours}/scan`, { qr: v.qr, push_name: 'wa-gateway' })
})
await until('our client to connect', () => lines.find((v) => v.connected))
// Its prekeys reach the server right after login.
await new Promise((r) => setTimeout(r, 1500))
const fromOurs = 'hello from wa-gateway ✓'
chat.stdin.write(JSON.stringify({ to: number, text: fromOurs }) + '\n')
const ack = await until('our send to be acked', () => lines.find((v) => v.sent || v.error))
if (ack.error) fail(`our client could not send: ${ack.error}`)
await until('Baileys to decrypt our client', () => received.find((r) => r.text === fromOurs))
console.log(`wa-gateway → Baileys: ${ack.sent.id} decrypted`)
const toOurs = 'hello back from Baileys ✓'
const back = await sendFromBaileys(`${ours}@s.whatsapp.net`, toOurs)
const mine = await until('our client to decrypt Baileys', () =>
	lines.find((v) => v.message && v.message.id === back)
)
if (mine.message.text !== toOurs) fail(`our client read ${JSON.stringify(mine.message.text)}`)
console.log(`Baileys → wa-gateway: ${back} decrypted and stored`)
await until('a delivery receipt for our message', () =>
	lines.find((v) => v.receipt && v.receipt.id === ack.sent.id && v.receipt.status === 'delivered')
)
console.log('wa-gateway saw Baileys\' delivery receipt')

// 3. One group of Baileys, the simulated user and our client, created through the control API
// (the simulated user creates it): each sends one text; every other member reads all three.
for (const mode of ['pn', 'lid']) {
	const { jid: gid } = await control('POST', '/groups', {
		subject: `Judges (${mode})`,
		creator: user,
		participants: [number, ours],
		addressing_mode: mode
	})
	await until('our client to hear of the group', () =>
		lines.find((v) => v.group && v.group.group === gid && v.group.action === 'create')
	)
	const texts = { user: `${mode} group: from the simulated user ✓`, baileys: `${mode} group: from Baileys ✓`, ours: `${mode} group: from wa-gateway ✓` }
	const { id: userId } = await control('POST', `/phones/${user}/send`, { to: gid, text: texts.user })
	const baileysId = await sendFromBaileys(gid, texts.baileys)
	chat.stdin.write(JSON.stringify({ to: gid, text: texts.ours }) + '\n')
	const gAck = await until('our group send to be acked', () =>
		lines.find((v) => (v.sent && v.sent.chat === gid) || (v.error && !v.sent))
	)
	if (gAck.error) fail(`our client could not send to the group: ${gAck.error}`)
	const oursId = gAck.sent.id
	for (const [id, text] of [[userId, texts.user], [oursId, texts.ours]]) {
		await until(`Baileys to read ${text}`, () => received.find((r) => r.id === id && r.from === gid && r.text === text), 30)
	}
	for (const [id, text] of [[baileysId, texts.baileys], [oursId, texts.ours]]) {
		const m = await until(`the simulated user to read ${text}`, async () =>
			(await control('GET', `/phones/${user}/messages`)).find((m) => m.id === id && m.chat === gid && m.devices === 2), 30
		)
		if (m.text !== text) fail(`the user read ${JSON.stringify(m.text)}`)
	}
	for (const [id, text] of [[userId, texts.user], [baileysId, texts.baileys]]) {
		const m = await until(`our client to read ${text}`, () =>
			lines.find((v) => v.message && v.message.id === id), 30
		)
		if (m.message.text !== text || m.message.chat !== gid) fail(`our client read ${JSON.stringify(m.message)}`)
	}
	console.log(`${mode} group ${gid}: every member read the other two`)
}
// 4. The reach-out time-lock: the simulator's w:mex notification and query answer, read by
// Baileys' own parsers (handleReachoutTimelockNotification, fetchAccountReachoutTimelock).
await control('POST', '/faults', { account: number, fault: 'reach_out_lock', on: true })
const pushed = await until('a time-lock notification', () => timelocks.find((t) => t.isActive))
const fetched = await sock.fetchAccountReachoutTimelock()
if (!fetched.isActive || !(fetched.timeEnforcementEnds > new Date(Date.now() + 3600e3)))
	fail(`time-lock answer read as ${JSON.stringify(fetched)}`)
if (pushed.enforcementType !== 'DEFAULT') fail(`time-lock notification read as ${JSON.stringify(pushed)}`)
await control('POST', '/faults', { account: number, fault: 'reach_out_lock', on: false })
await until('the lift notification', () => timelocks.length >= 2 && !timelocks[timelocks.length - 1].isActive)
if ((await sock.fetchAccountReachoutTimelock()).isActive) fail('time-lock still active after the lift')
console.log(`time-lock: Baileys read ${JSON.stringify(timelocks)}`)

chat.kill()
rmSync(dir, { recursive: true, force: true })
console.log('PASS: Baileys exchanged texts both ways with a simulated user and with wa-gateway, and in PN and LID groups with both; it read the reach-out time-lock the simulator set and lifted')
process.exit(0)
