//! Node encoder, following the references' string rules (PROTOCOL.md §4.4): token, double-byte
//! token, NIBBLE_8, HEX_8, else raw UTF-8. JIDs are written as JIDs only when typed as such.

use super::error::EncodeError;
use super::jid::{Jid, JidForm};
use super::node::{Content, Node, Value};
use super::pack::{packing_for, write_packed};
use super::tag;
use super::token::{self, Token};

/// Appends the encoding of `node` (no flags byte) to `out`.
pub fn encode_node(node: &Node, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let has_content = !matches!(node.content, Content::None);
    write_list_start(out, 1 + 2 * node.attrs.len() + usize::from(has_content))?;
    write_str(out, &node.tag);
    for (k, v) in &node.attrs {
        write_str(out, k);
        write_value(out, v)?;
    }
    match &node.content {
        Content::None => {}
        Content::Bytes(b) => write_binary(out, b)?,
        Content::Text(v) => write_value(out, v)?,
        Content::Children(children) => {
            write_list_start(out, children.len())?;
            for c in children {
                encode_node(c, out)?;
            }
        }
    }
    Ok(())
}

fn write_list_start(out: &mut Vec<u8>, n: usize) -> Result<(), EncodeError> {
    match n {
        0 => out.push(tag::LIST_EMPTY),
        1..=255 => out.extend_from_slice(&[tag::LIST_8, n as u8]),
        256..=65535 => {
            out.push(tag::LIST_16);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        _ => return Err(EncodeError::ListTooLong(n)),
    }
    Ok(())
}

fn write_binary(out: &mut Vec<u8>, data: &[u8]) -> Result<(), EncodeError> {
    let n = data.len();
    if n < 256 {
        out.extend_from_slice(&[tag::BINARY_8, n as u8]);
    } else if n < 1 << 20 {
        out.extend_from_slice(&[
            tag::BINARY_20,
            ((n >> 16) & 0x0f) as u8,
            (n >> 8) as u8,
            n as u8,
        ]);
    } else {
        let n32 = u32::try_from(n).map_err(|_| EncodeError::TooLong(n))?;
        out.push(tag::BINARY_32);
        out.extend_from_slice(&n32.to_be_bytes());
    }
    out.extend_from_slice(data);
    Ok(())
}

fn write_value(out: &mut Vec<u8>, v: &Value) -> Result<(), EncodeError> {
    match v {
        Value::Str(s) => {
            write_str(out, s);
            Ok(())
        }
        Value::Jid(j) => write_jid(out, j),
    }
}

/// Writes a string in its most compact form. Never fails: raw strings of 4 GiB cannot exist
/// in a node we built, and the length check falls back to BINARY_32.
fn write_str(out: &mut Vec<u8>, s: &str) {
    if let Some(t) = token::lookup(s) {
        match t {
            Token::Single(i) => out.push(i),
            Token::Double { dict, index } => {
                out.extend_from_slice(&[tag::DICTIONARY_0 + dict, index])
            }
        }
        return;
    }
    if let Some(p) = packing_for(s) {
        out.push(match p {
            super::pack::Packing::Nibble => tag::NIBBLE_8,
            super::pack::Packing::Hex => tag::HEX_8,
        });
        write_packed(out, p, s);
        return;
    }
    // Only > 4 GiB strings fail, which no node of ours can hold.
    let _ = write_binary(out, s.as_bytes());
}

/// A JID part: the empty string is written as LIST_EMPTY, like the references' empty user.
fn write_part(out: &mut Vec<u8>, s: &str) {
    if s.is_empty() {
        out.push(tag::LIST_EMPTY);
    } else {
        write_str(out, s);
    }
}

fn write_jid(out: &mut Vec<u8>, j: &Jid) -> Result<(), EncodeError> {
    match j.wire_form() {
        JidForm::Pair => {
            if j.device > 0 || j.agent > 0 || j.integrator > 0 {
                return Err(EncodeError::UnencodableJid(j.to_string()));
            }
            out.push(tag::JID_PAIR);
            write_part(out, &j.user);
            write_str(out, j.server.as_str());
        }
        JidForm::Ad => {
            let domain = match (j.server.ad_domain(), j.agent) {
                (Some(0), agent) if agent > 0 => agent,
                (Some(d), 0) => d,
                _ => return Err(EncodeError::UnencodableJid(j.to_string())),
            };
            // Agents must not collide with the four named domains.
            let device = u8::try_from(j.device)
                .ok()
                .filter(|_| j.agent == 0 || !matches!(j.agent, 1 | 128 | 129))
                .ok_or_else(|| EncodeError::UnencodableJid(j.to_string()))?;
            if j.integrator > 0 {
                return Err(EncodeError::UnencodableJid(j.to_string()));
            }
            out.extend_from_slice(&[tag::AD_JID, domain, device]);
            write_part(out, &j.user);
        }
        JidForm::Fb => {
            if j.agent > 0 || j.integrator > 0 {
                return Err(EncodeError::UnencodableJid(j.to_string()));
            }
            out.push(tag::FB_JID);
            write_part(out, &j.user);
            out.extend_from_slice(&j.device.to_be_bytes());
            write_str(out, "msgr");
        }
        JidForm::Interop => {
            if j.agent > 0 {
                return Err(EncodeError::UnencodableJid(j.to_string()));
            }
            out.push(tag::INTEROP_JID);
            write_part(out, &j.user);
            out.extend_from_slice(&j.device.to_be_bytes());
            out.extend_from_slice(&j.integrator.to_be_bytes());
            write_str(out, "interop");
        }
    }
    Ok(())
}
