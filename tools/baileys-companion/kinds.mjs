// The kinds judge: a real Baileys companion sends our REST account (`wa-gateway serve`, pointed
// at `wa-gateway simulate`) a location, a contact card, a reaction to our text, an edit of its
// own text and a revoke of its own text; each must show in our history (`GET …/messages`) and in
// our signed webhook as issue 21 says. Prints one PASS/FAIL line per check; exit code 0 only if
// every check held (1 on a failed check, 2 when the set-up itself broke).
// Usage: node kinds.mjs <path to wa-gateway binary>
import { fileURLToPath } from 'node:url'
import { isDeepStrictEqual } from 'node:util'
import { Judge, show, sleep, simulatorTrusted } from './lib.mjs'

const bin = process.argv[2]
if (!bin) {
	console.error('usage: node kinds.mjs <path to wa-gateway binary>')
	process.exit(2)
}
const info = await simulatorTrusted(fileURLToPath(import.meta.url), bin, 'KINDS_JUDGE_SIM')
const j = new Judge('kinds', info)
const baileysNumber = '15551230001'
const ourNumber = '15551230003'
const check = (...a) => j.check(...a)
const poll = (...a) => j.poll(...a)
const must = (...a) => j.must(...a)
const abort = (m) => j.abort(m)

// ---- Baileys, linked as companion.mjs links it (QR, scan, restart on 515, open) ----
const received = [] // what Baileys decrypted: { key, message }
const sent = new Map() // Baileys' own messages, for retry receipts
const { sock, state } = await j.baileys(
	baileysNumber,
	'Baileys Judge',
	{ 'messages.upsert': ({ messages }) => received.push(...messages.filter((m) => m.message)) },
	{ markOnlineOnConnect: true, getMessage: async (key) => sent.get(key.id) }
)
console.log(`Baileys linked as ${state.creds.me?.id}`)
const sendFromBaileys = async (content) => {
	const m = await sock.sendMessage(`${ourNumber}@s.whatsapp.net`, content)
	sent.set(m.key.id, m.message)
	return m.key
}

// ---- our REST service, a separate process on the same simulator ----
// The receiver below listens on loopback.
const { listening, api, okApi } = await j.serve(bin, 'judge', 'kinds', { WA_GATEWAY_WEBHOOK_ALLOW_PRIVATE: '1' })
console.log(`wa-gateway serve at ${listening}`)

// ---- the webhook receiver: every body kept with whether its signature holds ----
const hooks = await j.webhooks(okApi)

// ---- link our account: connect, the simulated phone scans the QR, connected ----
await j.linkRest(okApi, ourNumber, 'wa-gateway REST')
// Its prekeys reach the server right after login.
await sleep(1500)
console.log(`our account ${ourNumber} connected`)

// ---- 1. our text to Baileys ----
const ourText = 'hello Baileys, from the REST account ✓'
const sendRes = await api('POST', '/send', { to: baileysNumber, message: ourText })
if (sendRes.status !== 200 || !sendRes.json?.data?.messageId) abort(`POST /send: HTTP ${sendRes.status} ${sendRes.text}`)
const ourMsgId = sendRes.json.data.messageId
const ourWaId = ourMsgId.split('_').pop()
const ourAtBaileys = await poll(() => received.find((m) => m.key.id === ourWaId))
check(
	'Baileys received our REST text (messages.upsert)',
	ourAtBaileys && (ourAtBaileys.message.conversation ?? ourAtBaileys.message.extendedTextMessage?.text) === ourText,
	ourAtBaileys ? JSON.stringify(ourAtBaileys.message) : `no upsert with id ${ourWaId}`
)
if (!ourAtBaileys) abort('nothing to react to')

// ---- 2. Baileys sends the kinds ----
const history = async () => (await okApi('GET', '/messages?limit=200')).messages
const row = (rows, waId) => rows.find((r) => r.messageId.endsWith(`_${waId}`))
const place = { degreesLatitude: 48.858093, degreesLongitude: 2.294694, name: 'Eiffel Tower', address: 'Champ de Mars, 75007 Paris' }
const locKey = await sendFromBaileys({ location: place })
// One contact: Baileys makes a contactMessage of contacts[0] (Utils/messages.js), so its
// displayName goes there (the outer one names a contactsArrayMessage).
const vcard = 'BEGIN:VCARD\nVERSION:3.0\nFN:Ada Lovelace\nTEL;type=CELL;waid=15551239999:+1 555 123 9999\nEND:VCARD'
const card = { displayName: 'Ada Lovelace', vcard }
const cardKey = await sendFromBaileys({ contacts: { displayName: 'Ada Lovelace', contacts: [card] } })
const reactKey = await sendFromBaileys({ react: { text: '👍', key: ourAtBaileys.key } })
const typo = 'fixde'
const editKey = await sendFromBaileys({ text: typo })
// A person edits and deletes what they see: both texts are in our history before.
await must('the text to edit in our history', async () => row(await history(), editKey.id))
const editMsgKey = await sendFromBaileys({ text: 'fixed', edit: editKey })
const doomed = 'this one goes'
const revokeKey = await sendFromBaileys({ text: doomed })
await must('the text to revoke in our history', async () => row(await history(), revokeKey.id))
const revokeMsgKey = await sendFromBaileys({ delete: revokeKey })
console.log(
	`Baileys sent: location ${locKey.id}, contact ${cardKey.id}, reaction ${reactKey.id} on ${ourWaId}, ` +
		`text ${editKey.id} edited by ${editMsgKey.id}, text ${revokeKey.id} revoked by ${revokeMsgKey.id}`
)

// ---- 3. our history ----
const baileysCUs = `${baileysNumber}@c.us`
const settled = (rows) => {
	const r = (k) => row(rows, k.id)
	return (
		r(locKey) &&
		r(cardKey) &&
		row(rows, ourWaId)?.reactions?.length &&
		r(editKey)?.editedAt &&
		r(revokeKey)?.type === 'revoked'
	)
}
const rows = (await poll(async () => {
	const rows = await history()
	return settled(rows) ? rows : undefined
})) ?? (await history())
{
	const r = row(rows, locKey.id)
	check(
		'history: the location row is type "location", hasMedia false, with the coordinates and name Baileys sent',
		r?.type === 'location' &&
			r.hasMedia === false &&
			r.content?.latitude === place.degreesLatitude &&
			r.content?.longitude === place.degreesLongitude &&
			r.content?.name === place.name &&
			r.content?.address === place.address &&
			r.from === baileysCUs,
		show(r)
	)
}
{
	const r = row(rows, cardKey.id)
	check(
		'history: the contact row is type "vcard" with content.displayName and the vCard text',
		r?.type === 'vcard' && r.hasMedia === false && r.content?.displayName === card.displayName && r.content?.vcard === vcard,
		show(r)
	)
}
{
	const r = row(rows, ourWaId)
	const reactions = (r?.reactions ?? []).map(({ emoji, from }) => ({ emoji, from }))
	check(
		`history: our text's row has reactions [{emoji "👍", from "${baileysCUs}"}]`,
		r?.messageId === ourMsgId && r.message === ourText && isDeepStrictEqual(reactions, [{ emoji: '👍', from: baileysCUs }]),
		show(r)
	)
}
{
	const r = row(rows, editKey.id)
	check(
		'history: the edited text shows "fixed" with an editedAt',
		r?.message === 'fixed' && r.type === 'chat' && typeof r.editedAt === 'string' && !Number.isNaN(Date.parse(r.editedAt)),
		show(r)
	)
}
{
	const r = row(rows, revokeKey.id)
	check(
		'history: the revoked text is type "revoked", revoked true, message null',
		r?.type === 'revoked' && r.revoked === true && r.message === null,
		show(r)
	)
}
{
	// Edits and revokes show through their target only; a reaction may be listed on its own
	// (issue 21 names the type), but then as what it is, never as a "chat".
	const stray = rows.filter((r) => ['edit', 'revoke'].includes(r.type) || [editMsgKey, revokeMsgKey].some((k) => r.messageId.endsWith(`_${k.id}`)))
	const own = row(rows, reactKey.id)
	check(
		'history: no row of type "edit"/"revoke" (nor for the edit or revoke messages); the reaction, if listed, is type "reaction"',
		stray.length === 0 && (!own || (own.type === 'reaction' && own.content?.emoji === '👍')),
		show({ stray, reactionRow: own })
	)
}

// ---- 4. our webhook ----
const events = (kind, pred) => {
	const byId = new Map()
	for (const h of hooks) if (h.body?.event === kind && pred(h.body.data)) byId.set(h.body.id, h.body)
	return [...byId.values()]
}
const endsWith = (k) => (d) => d?.messageId?.endsWith(`_${k.id}`)
const expected = () =>
	events('message.received', endsWith(locKey)).length &&
	events('message.received', endsWith(cardKey)).length &&
	events('message.reaction', (d) => d?.messageId === ourMsgId).length &&
	events('message.edited', endsWith(editKey)).length &&
	events('message.revoked', endsWith(revokeKey)).length
await poll(expected, 30)
// Room for a second event of a kind to show up, were one raised.
await sleep(3000)
const once = (list) => (list.length === 1 ? list[0] : undefined)
const pick = (d) => d && { type: d.type, hasMedia: d.hasMedia, content: d.content }
for (const [what, key, kind] of [
	['location', locKey, 'location'],
	['contact', cardKey, 'vcard']
]) {
	const list = events('message.received', endsWith(key))
	const e = once(list)
	check(
		`webhook: message.received once for the ${what}, type "${kind}" and content as in history`,
		e && e.data.type === kind && isDeepStrictEqual(pick(e.data), pick(row(rows, key.id))),
		`${list.length} event(s): ${show(list)}`
	)
}
{
	const list = events('message.reaction', (d) => d?.messageId === ourMsgId)
	const e = once(list)
	check(
		'webhook: message.reaction once, 👍 by Baileys on our text',
		e && e.data.emoji === '👍' && e.data.removed === false && e.data.by === baileysCUs,
		`${list.length} event(s): ${show(list)}`
	)
}
{
	const list = events('message.edited', endsWith(editKey))
	const e = once(list)
	check('webhook: message.edited once, the message now "fixed"', e && e.data.message?.message === 'fixed' && e.data.by === baileysCUs, `${list.length} event(s): ${show(list)}`)
}
{
	const list = events('message.revoked', endsWith(revokeKey))
	const e = once(list)
	check(
		'webhook: message.revoked once, the message now revoked',
		e && e.data.message?.type === 'revoked' && e.data.message?.revoked === true && e.data.by === baileysCUs,
		`${list.length} event(s): ${show(list)}`
	)
}
{
	const stray = hooks.filter(
		(h) => h.body?.event === 'message.received' && (['edit', 'revoke', 'reaction'].includes(h.body.data?.type) || [reactKey, editMsgKey, revokeMsgKey].some((k) => endsWith(k)(h.body.data)))
	)
	check('webhook: no message.received for the reaction, the edit or the revoke themselves', stray.length === 0, show(stray.map((h) => h.body)))
}
{
	const bad = hooks.filter((h) => !h.valid)
	check(`webhook: every signature valid (${hooks.length} deliveries)`, hooks.length > 0 && bad.length === 0, show(bad.map((h) => ({ header: h.header, event: h.body?.event }))))
}

j.finish()
