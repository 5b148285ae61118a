// The app-state judge: a real Baileys companion and our REST account (`wa-gateway serve`) are two
// linked devices of the same simulated phone. Baileys archives, pins and mutes chats with its own
// app-state encoder (chatModify: its keys, its MACs, its LTHash); our REST account must show each
// change in `GET …/chats`. Then our REST account unarchives, mutes and unmutes; Baileys' own
// decoder (server_sync → resyncAppState, MACs and LTHash checked) must report each as
// chats.update. Prints one PASS/FAIL line per check; exit code 0 only if every check held (1 on a
// failed check, 2 when the set-up itself broke).
// Usage: node appstate.mjs <path to wa-gateway binary>
import { fileURLToPath } from 'node:url'
import { jidNormalizedUser } from 'baileys'
import { Judge, show, simulatorTrusted } from './lib.mjs'

const bin = process.argv[2]
if (!bin) {
	console.error('usage: node appstate.mjs <path to wa-gateway binary>')
	process.exit(2)
}
const info = await simulatorTrusted(fileURLToPath(import.meta.url), bin, 'APPSTATE_JUDGE_SIM')
const j = new Judge('appstate', info)
// One phone, two companions (Baileys and our REST account); two simulated users it talks to.
const me = '15551230021'
const friends = ['15551230022', '15551230023']
// The phone knows both users before it links: they are its contacts.
for (const f of friends) await j.control('POST', `/phones/${f}/echo`, { on: false })

// ---- Baileys, the phone's first companion ----
const received = []
const chatUpdates = [] // every chats.update Baileys emitted: { at, update }
const { sock, state } = await j.baileys(
	me,
	'App State Judge',
	{
		'messages.upsert': ({ messages }) => received.push(...messages.filter((m) => m.message)),
		'chats.update': (updates) => chatUpdates.push(...updates.map((update) => ({ at: Date.now(), update })))
	},
	{ markOnlineOnConnect: false }
)
// The phone's key share (APP_STATE_SYNC_KEY_SHARE) is what lets Baileys write patches.
const keyId = await j.poll(() => state.creds.myAppStateKeyId, 30)
j.check("Baileys got the phone's app-state sync key share at linking", !!keyId, 'no myAppStateKeyId')
if (!keyId) j.abort('Baileys cannot write app state without a key')
console.log(`Baileys linked as ${state.creds.me?.id}`)

// ---- our REST service, the same phone's second companion ----
const { listening, api, okApi } = await j.serve(bin, 'judge', 'appstate')
await j.linkRest(okApi, me, 'wa-gateway REST')
console.log(`our account (a second companion of ${me}) connected at ${listening}`)

// ---- the phone's contacts, synced at linking ----
const contactsOk = (list) => friends.every((f) => list.some((c) => c.pn === `${f}@c.us` && c.lid?.endsWith('@lid')))
const contacts = await j.poll(async () => {
	const list = (await okApi('GET', '/contacts?limit=100')).contacts
	return contactsOk(list) && list
}, 30, 1000)
j.check(
	"our GET …/contacts lists the phone's contacts with their PN and LID (app-state sync at linking)",
	!!contacts,
	show((await okApi('GET', '/contacts?limit=100')).contacts)
)

// ---- each user writes; both companions get it, so both know the chats ----
const lastOf = {}
for (const f of friends) {
	const text = `hello from ${f}`
	await j.control('POST', `/phones/${f}/send`, { to: me, text })
	lastOf[f] = await j.must(`Baileys to receive ${f}'s text`, () =>
		received.find((m) => (m.message.conversation ?? m.message.extendedTextMessage?.text) === text)
	)
}
const chats = async () => (await okApi('GET', '/chats?limit=100')).chats
const chatOf = (list, f) => list.find((c) => c.pn === `${f}@c.us` || c.id === `${f}@c.us`)
await j.must('both chats in our GET …/chats', async () => {
	const list = await chats()
	return friends.every((f) => chatOf(list, f)?.lastMessage) && list
})
// Baileys addresses a chat as its messages arrived (PN or LID): that is the index it writes.
const jidOf = (f) => jidNormalizedUser(lastOf[f].key.remoteJid)
const range = (f) => [{ key: lastOf[f].key, messageTimestamp: lastOf[f].messageTimestamp }]

// ---- 1. Baileys writes, we read ----
const [a, b] = friends
const until = Date.now() + 8 * 3600 * 1000
await sock.chatModify({ archive: true, lastMessages: range(a) }, jidOf(a))
await sock.chatModify({ pin: true }, jidOf(a))
await sock.chatModify({ mute: until }, jidOf(b))
console.log(`Baileys archived and pinned ${jidOf(a)}, muted ${jidOf(b)} until ${new Date(until).toISOString()}`)
await j.poll(async () => {
	const list = await chats()
	return chatOf(list, a)?.archived === true && chatOf(list, a).pinned && chatOf(list, b)?.mutedUntil
}, 30, 1000)
const after1 = await chats()
const [ca, cb] = [chatOf(after1, a), chatOf(after1, b)]
j.check('our GET …/chats shows the chat Baileys archived as archived', ca?.archived === true, show(ca))
j.check(
	'our GET …/chats shows the chat Baileys pinned as pinned (a time)',
	typeof ca?.pinned === 'string' && !Number.isNaN(Date.parse(ca.pinned)),
	show(ca)
)
j.check(
	`our GET …/chats shows the chat Baileys muted as muted until ${new Date(until).toISOString()}`,
	typeof cb?.mutedUntil === 'string' && Math.abs(Date.parse(cb.mutedUntil) - until) < 1000,
	show(cb)
)
j.check('the chat Baileys only muted is neither archived nor pinned at ours', cb?.archived === false && cb?.pinned === null, show(cb))

// ---- 2. we write, Baileys' decoder reads ----
const mark = Date.now()
// A chat update at Baileys names the chat by PN or by LID.
const names = (f, c) => new Set([`${f}@s.whatsapp.net`, jidOf(f), c?.lid].filter(Boolean))
const about = (f, c) => (u) => names(f, c).has(jidNormalizedUser(u.id))
const later = (pred) => chatUpdates.filter((c) => c.at >= mark && pred(c.update)).map((c) => c.update)
const unarchived = await api('POST', `/chats/${a}@c.us/unarchive`)
j.check('our POST …/chats/:id/unarchive answers 200', unarchived.status === 200, unarchived.text)
const mutedFor = 3600
const muteRes = await api('POST', `/chats/${a}@c.us/mute`, { seconds: mutedFor })
const wantMute = Date.now() + mutedFor * 1000
j.check('our POST …/chats/:id/mute answers 200', muteRes.status === 200, muteRes.text)
const unmuted = await api('POST', `/chats/${b}@c.us/unmute`)
j.check('our POST …/chats/:id/unmute answers 200', unmuted.status === 200, unmuted.text)
const [isA, isB] = [about(a, ca), about(b, cb)]
const unarchiveSeen = () => later((u) => isA(u) && u.archived === false)
const muteSeen = () => later((u) => isA(u) && typeof u.muteEndTime === 'number')
const unmuteSeen = () => later((u) => isB(u) && 'muteEndTime' in u && u.muteEndTime === null)
await j.poll(() => unarchiveSeen().length && muteSeen().length && unmuteSeen().length, 30)
const all = () => show(later(() => true))
j.check('Baileys decoded our unarchive (chats.update archived false)', unarchiveSeen().length > 0, all())
j.check(
	`Baileys decoded our mute (chats.update muteEndTime ≈ now + ${mutedFor} s, in ms)`,
	Math.abs((muteSeen().at(-1)?.muteEndTime ?? 0) - wantMute) < 15000,
	all()
)
j.check('Baileys decoded our unmute (chats.update muteEndTime null)', unmuteSeen().length > 0, all())
{
	const list = await chats()
	const [na, nb] = [chatOf(list, a), chatOf(list, b)]
	j.check(
		'our GET …/chats agrees after our own actions (unarchived and muted; the other unmuted)',
		na?.archived === false && !!na?.mutedUntil && nb?.mutedUntil === null,
		show([na, nb])
	)
}

// ---- 3. both end at the server's versions ----
{
	const collections = ['regular_high', 'regular_low']
	const held = await state.keys.get('app-state-sync-version', collections)
	const server = {}
	for (const c of collections) server[c] = (await j.control('GET', `/phones/${me}/appstate/${c}`)).version
	const bv = Object.fromEntries(collections.map((c) => [c, held[c]?.version ?? 0]))
	j.check(
		"Baileys' regular_high and regular_low end at the server's versions (its LTHash checks held on every patch, ours included)",
		collections.every((c) => bv[c] === server[c] && server[c] > 0),
		show({ baileys: bv, server })
	)
}
j.finish()
