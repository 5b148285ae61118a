// What the judges share: the simulator (trusted through its CA, as a Baileys user would trust
// WhatsApp's), PASS/FAIL bookkeeping, polling, `wa-gateway serve` with a minted token, and a
// Baileys companion linked by the simulated phone scanning its QR.
import { spawn, spawnSync } from 'node:child_process'
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import makeWASocket, { WA_CERT_DETAILS, useMultiFileAuthState, DisconnectReason } from 'baileys'
import pino from 'pino'

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
export const show = (v) => JSON.stringify(v ?? null)

/** Resolves with a child's first stdout line; `onDeath` hears of an exit before it. */
export const firstLine = (child, what, onDeath) =>
	new Promise((resolve) => {
		const died = (code) => onDeath(`${what} exited with ${code} before its first line`)
		child.once('exit', died)
		createInterface({ input: child.stdout }).once('line', (line) => {
			child.off('exit', died)
			resolve(line)
		})
	})

/**
 * Node reads NODE_EXTRA_CA_CERTS only when it starts, and Baileys fetches app-state snapshots
 * and media from the simulator's HTTPS CDN: so the first run starts the simulator (which writes
 * its CA with `--ca-out`) and runs the script again trusting it. Returns the simulator's info
 * line in the second run; the first run exits with the second's code.
 */
export const simulatorTrusted = async (script, bin, envKey) => {
	if (process.env[envKey]) return JSON.parse(process.env[envKey])
	const caDir = mkdtempSync(join(tmpdir(), 'baileys-judge-ca-'))
	const sim = spawn(bin, ['simulate', '--listen', '127.0.0.1:0', '--control', '127.0.0.1:0', '--ca-out', join(caDir, 'ca.pem')], {
		stdio: ['ignore', 'pipe', 'inherit']
	})
	const line = await firstLine(sim, 'the simulator', (msg) => {
		console.error(`FAIL (set-up): ${msg}`)
		process.exit(2)
	})
	const info = JSON.parse(line)
	let code = 2
	if (!info.ca_cert || !info.cdn_url) console.error(`FAIL (set-up): the simulator named no CA or CDN: ${line}`)
	else {
		const judge = spawn(process.execPath, [script, ...process.argv.slice(2)], {
			stdio: 'inherit',
			env: { ...process.env, NODE_EXTRA_CA_CERTS: info.ca_cert, [envKey]: line }
		})
		code = await new Promise((resolve) => judge.once('exit', (c) => resolve(c ?? 2)))
	}
	sim.kill('SIGTERM')
	rmSync(caDir, { recursive: true, force: true })
	process.exit(code)
}

/**
 * Baileys fetches app-state snapshots and history blobs from `https://mmg.whatsapp.net` +
 * direct path (it ignores the media_conn hosts for them): the judge's stand-in for a hosts-file
 * entry sends that host to the simulator's CDN (whose certificate the process trusts).
 */
export const routeWhatsAppCdn = (cdnUrl) => {
	const cdn = new URL(cdnUrl)
	const real = globalThis.fetch
	globalThis.fetch = (input, init) => {
		const url = new URL(typeof input === 'string' || input instanceof URL ? input : input.url)
		if (url.hostname === 'mmg.whatsapp.net') {
			url.protocol = cdn.protocol
			url.host = cdn.host
			return real(url.toString(), init)
		}
		return real(input, init)
	}
}

/** One judge's run: its temp dir, children, checks and verdict. */
export class Judge {
	constructor(name, info) {
		this.name = name
		this.info = info
		this.dir = mkdtempSync(join(tmpdir(), `baileys-${name}-`))
		this.serveLog = join(this.dir, 'serve.log')
		this.children = []
		this.results = []
		this.closers = []
		this.logger = pino({ level: process.env.LOG_LEVEL ?? 'warn' })
		WA_CERT_DETAILS.PUBLIC_KEY = Buffer.from(info.root_public_key, 'base64')
		routeWhatsAppCdn(info.cdn_url)
	}

	cleanup() {
		for (const c of this.closers) {
			try {
				c()
			} catch {}
		}
		for (const c of this.children) c.kill('SIGTERM')
	}

	/** A broken set-up is no verdict: exit 2 with why, and keep the service's log. */
	abort(msg) {
		console.error(`FAIL (set-up): ${msg}`)
		console.error(`the service's log is kept in ${this.serveLog}:`)
		try {
			console.error(readFileSync(this.serveLog, 'utf8').split('\n').slice(-40).join('\n'))
		} catch {}
		this.cleanup()
		process.exit(2)
	}

	check(name, ok, detail) {
		this.results.push({ name, ok: !!ok })
		console.log(`${ok ? 'PASS' : 'FAIL'}: ${name}${ok ? '' : ` — ${detail ?? ''}`}`)
	}

	/** Polls pred until it gives a truthy value; undefined after the deadline. */
	async poll(pred, seconds = 20, every = 250) {
		const deadline = Date.now() + seconds * 1000
		while (Date.now() < deadline) {
			const v = await pred()
			if (v) return v
			await sleep(every)
		}
		return undefined
	}

	async must(what, pred, seconds = 20) {
		return (await this.poll(pred, seconds)) ?? this.abort(`timed out waiting for ${what}`)
	}

	/** The simulator's control API; a failing call is a broken set-up. */
	async control(method, path, body) {
		const res = await fetch(`${this.info.control_url}${path}`, {
			method,
			headers: { 'content-type': 'application/json' },
			body: body === undefined ? undefined : JSON.stringify(body)
		})
		const text = await res.text()
		if (!res.ok) this.abort(`simulator ${method} ${path}: HTTP ${res.status} ${text}`)
		return JSON.parse(text)
	}

	/**
	 * `wa-gateway serve` on the simulator (trusting its CA) and an admin token; `api` answers
	 * {status, json, text} for paths under `base` (/api/whatsapp/<sub>/<agent>), `okApi` the
	 * data of a 200.
	 */
	async serve(bin, sub, agent, extraEnv = {}) {
		const env = {
			...process.env,
			WA_GATEWAY_WS_URL: this.info.ws_url,
			WA_GATEWAY_ROOT_KEY: this.info.root_public_key,
			// The CDN's certificate chains to the simulator's CA, as WhatsApp's to a public root.
			WA_GATEWAY_WS_CA: this.info.ca_cert,
			WA_GATEWAY_BIND: '127.0.0.1:0',
			WA_GATEWAY_DATA_DIR: join(this.dir, 'data'),
			WA_GATEWAY_JWT_SECRET: randomBytes(32).toString('hex'),
			...extraEnv
		}
		const child = spawn(bin, ['serve'], { env, stdio: ['ignore', 'pipe', openSync(this.serveLog, 'w')] })
		this.children.push(child)
		const { listening } = JSON.parse(await firstLine(child, 'wa-gateway serve', (m) => this.abort(m)))
		const minted = spawnSync(bin, ['token', '--sub', `${this.name}-judge`, '--role', 'admin', '--subaccounts', '*', '--ttl', '1h'], {
			env,
			encoding: 'utf8'
		})
		if (minted.status !== 0) this.abort(`wa-gateway token: ${minted.stderr}`)
		const token = minted.stdout.trim()
		// A FormData body goes as multipart (fetch sets its boundary), anything else as JSON.
		const base = `${listening}/api/whatsapp/${sub}/${agent}`
		const api = async (method, path, body) => {
			const isForm = body instanceof FormData
			const res = await fetch(`${base}${path}`, {
				method,
				headers: { authorization: `Bearer ${token}`, ...(isForm || body === undefined ? {} : { 'content-type': 'application/json' }) },
				body: body === undefined ? undefined : isForm ? body : JSON.stringify(body)
			})
			const text = await res.text()
			let json
			try {
				json = JSON.parse(text)
			} catch {}
			return { status: res.status, json, text }
		}
		const okApi = async (method, path, body) => {
			const r = await api(method, path, body)
			if (r.status !== 200 || !r.json?.success) this.abort(`${method} ${path}: HTTP ${r.status} ${r.text}`)
			return r.json.data
		}
		return { listening, base, token, api, okApi }
	}

	/**
	 * A loopback webhook receiver set as the account's webhook: every body is kept with whether
	 * its signature holds by README's rule (t within five minutes, v1 = HMAC-SHA256(secret,
	 * t + "." + raw body)). Returns the array the deliveries land in.
	 */
	async webhooks(okApi) {
		const secret = randomBytes(24).toString('hex')
		const hooks = []
		const verified = (raw, header) => {
			const parts = (header ?? '').split(',').map((p) => p.trim().split('='))
			const t = Number((parts.find(([k]) => k === 't') ?? [])[1])
			if (!Number.isInteger(t) || Math.abs(Date.now() / 1000 - t) > 300) return false
			const expected = createHmac('sha256', secret).update(`${t}.`).update(raw).digest()
			return parts
				.filter(([k]) => k === 'v1')
				.some(([, v]) => {
					const got = Buffer.from(v ?? '', 'hex')
					return got.length === expected.length && timingSafeEqual(got, expected)
				})
		}
		const receiver = createServer((req, res) => {
			const chunks = []
			req.on('data', (c) => chunks.push(c))
			req.on('end', () => {
				const raw = Buffer.concat(chunks)
				let body
				try {
					body = JSON.parse(raw.toString('utf8'))
				} catch {}
				const header = req.headers['x-wa-gateway-signature']
				hooks.push({ body, valid: verified(raw, header), header })
				res.writeHead(200, { 'content-type': 'application/json' })
				res.end('{}')
			})
		})
		await new Promise((r) => receiver.listen(0, '127.0.0.1', r))
		this.closers.push(() => receiver.close())
		const url = `http://127.0.0.1:${receiver.address().port}/hook`
		await okApi('PUT', '/webhook', { url, secret })
		console.log(`webhook → ${url}`)
		return hooks
	}

	/** Connects our REST account and has the simulated phone `number` scan its QR. */
	async linkRest(okApi, number, pushName) {
		const { qrCode } = await okApi('POST', '/connect')
		if (!qrCode) this.abort('connect gave no qrCode')
		await this.control('POST', `/phones/${number}/scan`, { qr: qrCode, push_name: pushName })
		await this.must('our account to connect', async () => (await okApi('GET', '/status')).isConnected, 30)
	}

	/**
	 * A Baileys companion of `number`, linked as a user links it (QR, scan, restart on 515,
	 * open). `on` maps Baileys event names to handlers (ignored once the socket is replaced).
	 */
	async baileys(number, pushName, on = {}, options = {}) {
		const { state, saveCreds } = await useMultiFileAuthState(join(this.dir, 'baileys'))
		const link = { state, sock: undefined, opened: 0 }
		let generation = 0
		let scanned = false
		this.closers.push(() => {
			generation++ // the close of a socket we end is expected
			link.sock?.end(undefined)
		})
		const start = () => {
			const mine = ++generation
			const sock = makeWASocket({ auth: state, waWebSocketUrl: this.info.ws_url, logger: this.logger, ...options })
			link.sock = sock
			sock.ev.on('creds.update', saveCreds)
			for (const [event, handler] of Object.entries(on)) {
				sock.ev.on(event, (e) => {
					if (mine === generation) handler(e)
				})
			}
			sock.ev.on('connection.update', async (u) => {
				if (mine !== generation) return
				if (u.qr && !scanned) {
					scanned = true
					await this.control('POST', `/phones/${number}/scan`, { qr: u.qr, push_name: pushName, platform: 'android' })
				}
				if (u.connection === 'open') link.opened++
				if (u.connection === 'close') {
					const code = u.lastDisconnect?.error?.output?.statusCode
					if (code === DisconnectReason.restartRequired && link.opened === 0) start()
					else this.abort(`Baileys closed with ${code}: ${u.lastDisconnect?.error?.message}`)
				}
			})
		}
		start()
		await this.must('Baileys to link and open', () => link.opened > 0, 30)
		return link
	}

	/** Ends the run: exit 0 only if every check held (the temp dir is kept otherwise). */
	finish() {
		this.cleanup()
		const failed = this.results.filter((r) => !r.ok).length
		if (failed === 0) rmSync(this.dir, { recursive: true, force: true })
		else console.log(`the service's log is kept in ${this.serveLog}`)
		console.log(`${failed === 0 ? 'PASS' : 'FAIL'}: ${this.name} — ${this.results.length - failed}/${this.results.length} checks held`)
		process.exit(failed === 0 ? 0 : 1)
	}
}
