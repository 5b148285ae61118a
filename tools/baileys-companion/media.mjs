// The media judge: a real Baileys companion and our REST account (`wa-gateway serve`, pointed at
// `wa-gateway simulate`) exchange files through the simulator's HTTPS media CDN, as issue 22 says.
// (a) Baileys sends our account a JPEG image, an Ogg Opus voice note, a PDF document and a
//     640 KB binary file (for (c)); each must show in our history with its media entry, download from `GET …/messages/:id/media` as
//     the exact bytes Baileys sent, and arrive in our signed webhook with the same media entry.
// (b) Our REST account sends Baileys an image (multipart), a document (JSON base64) and a voice
//     note (multipart, `type: ptt`); Baileys' own `downloadMediaMessage` must get the exact bytes.
//     Baileys' phone (simulated) fetches and verifies each too, and our stanza's `type` and
//     `<enc mediatype>` must be those Baileys' own stanza carried for the same kind in (a).
// (c) Media retry both ways: a file whose CDN copy expired is uploaded again by a phone, asked by
//     Baileys (`updateMediaMessage`) and by our client (`GET …/media` of a file past
//     WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES, so not fetched before it expired).
// Prints one PASS/FAIL line per check; exit code 0 only if every check held (1 on a failed check,
// 2 when the set-up itself broke).
// Usage: node media.mjs <path to wa-gateway binary>
//
// Node must trust the simulator's CA to reach its CDN, and reads NODE_EXTRA_CA_CERTS only when it
// starts: so this script first starts the simulator (which writes its CA with `--ca-out`), then
// runs itself again with NODE_EXTRA_CA_CERTS pointing at that PEM, as a user of Baileys would.
import { createHash, randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { downloadMediaMessage } from 'baileys'
import sharp from 'sharp'
import { Judge, show, sleep, simulatorTrusted } from './lib.mjs'

const bin = process.argv[2]
if (!bin) {
	console.error('usage: node media.mjs <path to wa-gateway binary>')
	process.exit(2)
}
const info = await simulatorTrusted(fileURLToPath(import.meta.url), bin, 'MEDIA_JUDGE_SIM')
const j = new Judge('media', info)
const baileysNumber = '15551230001'
const ourNumber = '15551230003'
const sha256 = (b) => createHash('sha256').update(b).digest('hex')
const check = (...a) => j.check(...a)
const poll = (...a) => j.poll(...a)
const must = (...a) => j.must(...a)
const abort = (msg) => j.abort(msg)
const control = (...a) => j.control(...a)

// ---- the files ----
// A real JPEG (sharp, which Baileys itself uses for thumbnails): a gradient, so it is no
// one-colour block any encoder shrinks to nothing.
const jpeg = async (width, height, seed) => {
	const raw = Buffer.alloc(width * height * 3)
	for (let y = 0; y < height; y++)
		for (let x = 0; x < width; x++) {
			const i = (y * width + x) * 3
			raw[i] = (x * 255) / width
			raw[i + 1] = (y * 255) / height
			raw[i + 2] = (x * y + seed) & 0xff
		}
	return sharp(raw, { raw: { width, height, channels: 3 } }).jpeg({ quality: 85 }).toBuffer()
}
// A real Ogg Opus stream (RFC 7845): OpusHead, OpusTags, then 20 ms CELT silence frames
// (f8 ff fe), 50 to a page, granule positions at 48 kHz after a 312-sample pre-skip.
const CRC = (() => {
	const t = new Uint32Array(256)
	for (let i = 0; i < 256; i++) {
		let r = i << 24
		for (let j = 0; j < 8; j++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1
		t[i] = r >>> 0
	}
	return t
})()
const oggCrc = (buf) => {
	let crc = 0
	for (const b of buf) crc = ((crc << 8) ^ CRC[((crc >>> 24) ^ b) & 0xff]) >>> 0
	return crc
}
const oggPage = (flags, granule, serial, seq, packets) => {
	const lacing = []
	for (const p of packets) {
		let n = p.length
		for (; n >= 255; n -= 255) lacing.push(255)
		lacing.push(n)
	}
	const h = Buffer.alloc(27 + lacing.length)
	h.write('OggS', 0, 'latin1')
	h[5] = flags
	h.writeBigUInt64LE(BigInt(granule), 6)
	h.writeUInt32LE(serial, 14)
	h.writeUInt32LE(seq, 18)
	h[26] = lacing.length
	lacing.forEach((l, i) => (h[27 + i] = l))
	const page = Buffer.concat([h, ...packets])
	page.writeUInt32LE(oggCrc(page), 22)
	return page
}
const oggOpus = (seconds, serial) => {
	const preSkip = 312
	const head = Buffer.alloc(19)
	head.write('OpusHead', 0, 'latin1')
	head[8] = 1 // version
	head[9] = 1 // mono
	head.writeUInt16LE(preSkip, 10)
	head.writeUInt32LE(48000, 12)
	const vendor = Buffer.from('wa-gateway media judge')
	const tags = Buffer.alloc(16 + vendor.length)
	tags.write('OpusTags', 0, 'latin1')
	tags.writeUInt32LE(vendor.length, 8)
	vendor.copy(tags, 12)
	const pages = [oggPage(0x02, 0, serial, 0, [head]), oggPage(0, 0, serial, 1, [tags])]
	const frames = seconds * 50
	const silence = Buffer.from([0xf8, 0xff, 0xfe])
	for (let done = 0; done < frames; ) {
		const n = Math.min(50, frames - done)
		done += n
		pages.push(oggPage(done === frames ? 0x04 : 0, preSkip + done * 960, serial, pages.length, Array(n).fill(silence)))
	}
	return Buffer.concat(pages)
}
// A PDF-looking file of a few hundred KB (header, random body, trailer).
const pdfish = (kb) => Buffer.concat([Buffer.from('%PDF-1.4\n%\xe2\xe3\xcf\xd3\n', 'latin1'), randomBytes(kb * 1024), Buffer.from('\n%%EOF\n')])
const OPUS = 'audio/ogg; codecs=opus'
const AUTO_DOWNLOAD_MAX = 512 * 1024

// ---- Baileys, linked as companion.mjs links it (QR, scan, restart on 515, open) ----
const received = [] // what Baileys decrypted: WAMessage
const sent = new Map() // Baileys' own messages, for retry receipts
const { sock, state } = await j.baileys(
	baileysNumber,
	'Baileys Judge',
	{ 'messages.upsert': ({ messages }) => received.push(...messages.filter((m) => m.message)) },
	{ markOnlineOnConnect: true, getMessage: async (key) => sent.get(key.id) }
)
console.log(`Baileys linked as ${state.creds.me?.id}; CDN ${info.cdn_url}, trusted through NODE_EXTRA_CA_CERTS`)

// ---- our REST service, a separate process on the same simulator, trusting its CA ----
const { listening, base, token, api, okApi } = await j.serve(bin, 'judge', 'media', {
	// The receiver below listens on loopback.
	WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE: '1',
	// Files past it are fetched only when asked for: the large document below is, after its
	// CDN copy expired, so our client must ask its phone to upload it again (media retry).
	WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES: String(AUTO_DOWNLOAD_MAX),
	MEDIA_JUDGE_SIM: undefined,
	NODE_EXTRA_CA_CERTS: undefined
})
console.log(`wa-gateway serve at ${listening}`)

// ---- the webhook receiver: every body kept with whether its signature holds ----
const hooks = await j.webhooks(okApi)

// ---- link our account: connect, the simulated phone scans the QR, connected ----
await j.linkRest(okApi, ourNumber, 'wa-gateway REST')
// Its prekeys reach the server right after login.
await sleep(1500)
console.log(`our account ${ourNumber} connected`)

// ---- (a) Baileys sends our account an image, a voice note and a document ----
const waveform = Uint8Array.from({ length: 64 }, (_, i) => Math.round(50 + 40 * Math.sin(i / 4)))
const inbound = [
	{ what: 'image', type: 'image', bytes: await jpeg(320, 240, 7), field: 'imageMessage' },
	{ what: 'voice note', type: 'ptt', bytes: oggOpus(3, 0x5a1e0001), field: 'audioMessage' },
	{ what: 'document', type: 'document', bytes: pdfish(300), field: 'documentMessage' },
	// Past WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES: not fetched unasked (see (c)).
	{ what: 'large document', type: 'document', bytes: pdfish(640), field: 'documentMessage', skipped: true }
]
const [img, ptt, doc, big] = inbound
img.content = { image: img.bytes, caption: 'a JPEG from Baileys ✓', mimetype: 'image/jpeg' }
ptt.content = { audio: ptt.bytes, ptt: true, mimetype: OPUS, waveform }
doc.content = { document: doc.bytes, mimetype: 'application/pdf', fileName: 'judge-report.pdf' }
big.content = { document: big.bytes, mimetype: 'application/octet-stream', fileName: 'judge-large.bin' }
for (const f of inbound) {
	let m
	try {
		m = await sock.sendMessage(`${ourNumber}@s.whatsapp.net`, f.content)
	} catch (e) {
		// Baileys could not upload to the simulator's CDN: that is the verdict on this file.
		check(`Baileys uploaded the ${f.what} to the simulator's CDN and sent it`, false, e?.stack ?? String(e))
		continue
	}
	sent.set(m.key.id, m.message)
	f.key = m.key
	f.sentMedia = m.message[f.field]
	console.log(`Baileys sent the ${f.what} (${f.bytes.length} bytes, sha256 ${sha256(f.bytes).slice(0, 16)}…) as ${m.key.id}, uploaded to ${f.sentMedia?.url}`)
}
const history = async () => (await okApi('GET', '/messages?limit=200')).messages
const row = (rows, waId) => rows.find((r) => r.messageId.endsWith(`_${waId}`))
const sentIn = inbound.filter((f) => f.key)
// Every file fetched (or failed, or skipped) before judging: a `pending` row is not yet a verdict.
const rows =
	(await poll(async () => {
		const rows = await history()
		return sentIn.every((f) => ['stored', 'failed', 'skipped'].includes(row(rows, f.key.id)?.media?.state)) ? rows : undefined
	}, 40)) ?? (await history())
// What the simulated phone of an account made of a message: every real phone fetches and checks
// a file it receives, and records the stanza's `type` and `<enc mediatype>`.
const phoneSaw = async (number, id, seconds = 30) =>
	poll(async () => (await control('GET', `/phones/${number}/messages`)).find((m) => m.id === id && m.media && (m.media.verified || m.media.error)), seconds)
// Baileys' stanza attributes per kind, the reference for ours in (b).
const reference = {}
for (const f of sentIn) {
	const seen = await phoneSaw(ourNumber, f.key.id)
	if (seen?.media?.verified) reference[f.type] ??= { stanzaType: seen.media.stanzaType, mediatype: seen.media.mediatype }
	f.phoneSaw = seen
}
console.log(`Baileys' media stanzas, as our phone saw them: ${show(reference)}`)
for (const f of sentIn.filter((f) => f.skipped)) {
	const r = row(rows, f.key.id)
	check(
		`history: the ${f.what} (${f.bytes.length} bytes, past WA_GATEWAY_MEDIA_AUTO_DOWNLOAD_MAX_BYTES) is type "${f.type}", media {size, sha256, state "skipped"}`,
		r?.type === f.type && r.hasMedia === true && r.media?.state === 'skipped' && r.media.size === f.bytes.length && r.media.sha256 === sha256(f.bytes),
		show(r)
	)
}
for (const f of sentIn.filter((f) => !f.skipped)) {
	const r = row(rows, f.key.id)
	f.row = r
	const sm = f.sentMedia
	const m = r?.media
	const extra =
		f.type === 'image'
			? r?.message === img.content.caption && m?.width === sm.width && m?.height === sm.height && sm.width === 320
			: f.type === 'ptt'
				? m?.seconds === sm.seconds && sm.seconds === 3
				: m?.fileName === doc.content.fileName
	const what =
		f.type === 'image'
			? `caption, width ${sm.width} and height ${sm.height}`
			: f.type === 'ptt'
				? `seconds ${sm.seconds}`
				: `fileName "${doc.content.fileName}"`
	check(
		`history: the ${f.what} is type "${f.type}", hasMedia true, media {mimetype "${sm.mimetype}", size ${f.bytes.length}, sha256, state "stored"} and Baileys' ${what}`,
		r?.type === f.type &&
			r.hasMedia === true &&
			r.from === `${baileysNumber}@c.us` &&
			m?.mimetype === sm.mimetype &&
			m.size === f.bytes.length &&
			m.sha256 === sha256(f.bytes) &&
			m.state === 'stored' &&
			typeof m.downloadUrl === 'string' &&
			extra,
		show(r)
	)
	const res = await fetch(`${base}/messages/${encodeURIComponent(r?.messageId ?? `x_${f.key.id}`)}/media`, {
		headers: { authorization: `Bearer ${token}` }
	})
	const body = Buffer.from(await res.arrayBuffer())
	const etag = res.headers.get('etag') ?? ''
	check(
		`GET …/messages/:id/media gives the ${f.what}'s exact bytes (sha256 equal to what Baileys sent), its type and length`,
		res.status === 200 &&
			sha256(body) === sha256(f.bytes) &&
			res.headers.get('content-type') === sm.mimetype &&
			Number(res.headers.get('content-length')) === f.bytes.length &&
			etag.includes(sha256(f.bytes)),
		`HTTP ${res.status} ${res.headers.get('content-type')} ${body.length} bytes sha256 ${sha256(body)} etag ${etag}` +
			(res.status === 200 ? '' : ` ${body.toString('utf8').slice(0, 300)}`)
	)
}

// ---- (b) our REST account sends Baileys an image, a document and a voice note ----
const outbound = [
	{ what: 'image (multipart)', field: 'imageMessage', bytes: await jpeg(200, 150, 99), width: 200, height: 150, mimetype: 'image/jpeg', caption: 'a JPEG from the REST account ✓', fileName: 'rest-photo.jpg', type: 'image' },
	{ what: 'document (JSON base64)', field: 'documentMessage', bytes: pdfish(250), mimetype: 'application/pdf', caption: 'a PDF from the REST account ✓', fileName: 'rest-report.pdf', type: 'document', json: true },
	{ what: 'voice note (multipart, type ptt)', field: 'audioMessage', bytes: oggOpus(4, 0x5a1e0002), seconds: 4, mimetype: OPUS, fileName: 'note.ogg', type: 'ptt' }
]
for (const f of outbound) {
	let body
	if (f.json) {
		body = { to: baileysNumber, message: f.caption, type: f.type, media: { base64: f.bytes.toString('base64'), mimetype: f.mimetype, filename: f.fileName } }
	} else {
		body = new FormData()
		body.set('to', baileysNumber)
		if (f.caption) body.set('message', f.caption)
		body.set('type', f.type)
		body.set('file', new Blob([f.bytes], { type: f.mimetype }), f.fileName)
	}
	const res = await api('POST', '/send', body)
	const id = res.json?.data?.messageId
	check(`POST …/send accepted the ${f.what}`, res.status === 200 && id, `HTTP ${res.status} ${res.text.slice(0, 400)}`)
	if (id) f.waId = id.split('_').pop()
}
for (const f of outbound.filter((f) => f.waId)) {
	const m = await poll(() => received.find((m) => m.key.id === f.waId), 40)
	// Baileys reads a captioned document through documentWithCaptionMessage, as WhatsApp sends it.
	const content = m && (m.message[f.field] ?? m.message.documentWithCaptionMessage?.message?.[f.field])
	let bytes
	let error
	if (content) {
		try {
			bytes = await downloadMediaMessage(m, 'buffer', {}, { logger: j.logger, reuploadRequest: sock.updateMediaMessage })
		} catch (e) {
			error = e?.stack ?? String(e)
		}
	}
	const declared =
		content &&
		content.mimetype === f.mimetype &&
		Number(content.fileLength) === f.bytes.length &&
		Buffer.from(content.fileSha256 ?? []).toString('hex') === sha256(f.bytes) &&
		(f.caption === undefined || content.caption === f.caption) &&
		(f.type !== 'document' || content.fileName === f.fileName) &&
		(f.type !== 'ptt' || content.ptt === true)
	check(
		`Baileys received our ${f.what} as ${f.field}${f.type === 'ptt' ? ' (ptt)' : ''} with our mimetype, length, fileSha256${f.caption ? ', caption' : ''}${f.type === 'document' ? ', fileName' : ''}`,
		declared,
		m ? show({ ...content, jpegThumbnail: undefined, mediaKey: undefined }) : `no upsert with id ${f.waId}`
	)
	check(
		`Baileys' downloadMediaMessage got our ${f.what}'s exact bytes from the simulator's CDN (sha256 equal)`,
		bytes && sha256(bytes) === sha256(f.bytes),
		error ?? (bytes ? `${bytes.length} bytes sha256 ${sha256(bytes)}` : m ? `not a media message: ${show(Object.keys(m.message))}` : 'nothing received')
	)
	// Baileys' phone fetched and checked the file too, and our stanza carried the `type` and
	// `<enc mediatype>` Baileys' own stanza carries for this kind.
	const seen = await phoneSaw(baileysNumber, f.waId)
	const want = reference[f.type]
	check(
		`Baileys' phone verified our ${f.what}, and our stanza's type/mediatype (${show(seen?.media && { stanzaType: seen.media.stanzaType, mediatype: seen.media.mediatype })}) are Baileys' own for a ${f.type} (${show(want)})`,
		seen?.media?.verified && seen.media.sha256 === sha256(f.bytes) && want && seen.media.stanzaType === want.stanzaType && seen.media.mediatype === want.mediatype,
		show(seen?.media)
	)
	if (f.type === 'image') {
		// What WhatsApp's apps show before the download, made by us from the bytes.
		const thumb = Buffer.from(content?.jpegThumbnail ?? [])
		check(
			`Baileys shows our ${f.what} at ${f.width}x${f.height} with a JPEG thumbnail before downloading it`,
			content && content.width === f.width && content.height === f.height && thumb.length > 0 && thumb[0] === 0xff && thumb[1] === 0xd8,
			`width ${content?.width}, height ${content?.height}, thumbnail ${thumb.length} bytes`
		)
	}
	if (f.type === 'ptt') {
		const wave = Buffer.from(content?.waveform ?? [])
		check(
			`Baileys shows our ${f.what} as ${f.seconds} s with a 64-bar waveform`,
			content && content.seconds === f.seconds && wave.length === 64 && Math.max(...wave) === 100,
			`seconds ${content?.seconds}, waveform ${show([...wave])}`
		)
	}
}

// ---- (c) media retry both ways: a file the CDN no longer has is uploaded again by a phone ----
const expire = async (media) => {
	const res = await fetch(`${info.control_url}/cdn/faults`, {
		method: 'POST',
		headers: { 'content-type': 'application/json' },
		body: JSON.stringify({ fault: 'expire_media', media })
	})
	return res.ok
}
// Baileys asks its phone: our REST document's CDN copy expires; Baileys' download gets 404, then
// `updateMediaMessage` (a server-error receipt to its own phone, a mediaretry notification back)
// gives a new direct path, and the download the exact bytes. Called by hand: rc14's
// `downloadMediaMessage` never calls its `reuploadRequest`, as it reads `error.status` of a Boom
// that keeps the status in `output.statusCode` (WhiskeySockets/Baileys#2767, open).
{
	const f = outbound.find((f) => f.type === 'document' && f.waId)
	const m = f && received.find((m) => m.key.id === f.waId)
	const content = m && (m.message[f.field] ?? m.message.documentWithCaptionMessage?.message?.[f.field])
	let detail = 'the document never reached Baileys'
	let ok = false
	if (content) {
		const before = content.directPath
		const held = await phoneSaw(baileysNumber, f.waId)
		const expired = held?.media?.verified && (await expire(before))
		const status = async () => {
			try {
				return sha256(await downloadMediaMessage(m, 'buffer', {}))
			} catch (e) {
				return e?.output?.statusCode ?? e?.status ?? String(e)
			}
		}
		const first = await status()
		let retried
		try {
			await sock.updateMediaMessage(m)
			retried = 'new path'
		} catch (e) {
			retried = e?.stack ?? String(e)
		}
		const then = await status()
		ok = expired && first === 404 && retried === 'new path' && content.directPath !== before && then === sha256(f.bytes)
		detail = show({ phoneHeld: held?.media?.verified, expired, firstDownload: first, updateMediaMessage: retried, newDirectPath: content.directPath !== before, thenSha256: then })
	}
	check("media retry (Baileys asks): after our document's CDN copy expired, Baileys' download got 404, updateMediaMessage a new path from its phone, then the exact bytes", ok, detail)
}
// Our account asks its phone: the large document (not fetched unasked) expires on the CDN;
// `GET …/media` must still give its exact bytes, our client having asked our phone to upload it
// again.
if (big.key) {
	let ok = false
	let detail
	const held = await phoneSaw(ourNumber, big.key.id)
	const expired = held?.media?.verified && (await expire(big.sentMedia.directPath))
	const id = row(await history(), big.key.id)?.messageId ?? `x_${big.key.id}`
	let last
	const body = await poll(async () => {
		const res = await fetch(`${base}/messages/${encodeURIComponent(id)}/media`, { headers: { authorization: `Bearer ${token}` } })
		const b = Buffer.from(await res.arrayBuffer())
		last = `HTTP ${res.status} ${res.status === 200 ? `${b.length} bytes` : b.toString('utf8').slice(0, 300)}`
		return res.status === 200 ? b : undefined
	}, 40)
	const after = row(await history(), big.key.id)
	ok = expired && body && sha256(body) === sha256(big.bytes) && after?.media?.state === 'stored'
	detail = show({ phoneHeld: held?.media, expired, last, sha256: body && sha256(body), row: after?.media })
	check("media retry (we ask): after the large document's CDN copy expired, GET …/media gave its exact bytes (our phone uploaded it again) and the row is now stored", ok, detail)
}

// ---- our webhook ----
const events = (kind, pred) => {
	const byId = new Map()
	for (const h of hooks) if (h.body?.event === kind && pred(h.body.data)) byId.set(h.body.id, h.body)
	return [...byId.values()]
}
const endsWith = (k) => (d) => d?.messageId?.endsWith(`_${k.id}`)
await poll(() => sentIn.every((f) => events('message.received', endsWith(f.key)).length), 30)
// Room for a second event of a kind to show up, were one raised.
await sleep(3000)
for (const f of sentIn) {
	const list = events('message.received', endsWith(f.key))
	const e = list.length === 1 ? list[0] : undefined
	const m = e?.data?.media
	check(
		`webhook: message.received once for the ${f.what}, type "${f.type}", hasMedia true, media {mimetype, size, sha256} as Baileys sent`,
		e &&
			e.data.type === f.type &&
			e.data.hasMedia === true &&
			m?.mimetype === f.sentMedia.mimetype &&
			m.size === f.bytes.length &&
			m.sha256 === sha256(f.bytes),
		`${list.length} event(s): ${show(list)}`
	)
}
{
	const bad = hooks.filter((h) => !h.valid)
	check(`webhook: every signature valid (${hooks.length} deliveries)`, hooks.length > 0 && bad.length === 0, show(bad.map((h) => ({ header: h.header, event: h.body?.event }))))
}

j.finish()
