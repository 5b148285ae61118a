//! Group send cost of our client against `wa-gateway simulate` (a separate process, so its CPU
//! is not counted) over loopback. Our client creates a LID-addressed group whose other members
//! are simulated users with a phone and a companion each, N member devices in all. The first
//! send distributes our sender key pairwise (usync of every member, bundles for every device,
//! one pkmsg each, committed with the row); later sends are one `skmsg` for everyone. Each send
//! is timed to the server's ack (the simulator acks on acceptance; its devices decrypt after).
//! Run: `cargo bench --bench group_send` (GROUP_DEVICES=10,100,1000, GROUP_SENDS=50 later
//! sends per size). Prints wall time and this process's CPU per send, and CPU per device.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use wa_gateway::binary::Jid;
use wa_gateway::client::{Client, ConnState, Event, MessageStatus};
use wa_gateway::store::Store;

mod support;
use support::{cpu, cpu_of, env_num, options, post, post_json};

fn main() {
    let sizes: Vec<usize> = std::env::var("GROUP_DEVICES")
        .unwrap_or_else(|_| "10,100,1000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let sends = env_num("GROUP_SENDS", 50).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        for (run, &devices) in sizes.iter().enumerate() {
            let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_wa-gateway"))
                .arg("simulate")
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
            let (opts, control) = options(&lines.next_line().await.unwrap().unwrap());
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(&format!("sqlite://{}", dir.path().join("wa.db").display()))
                .await
                .unwrap();
            let me = format!("155{run}0000000");
            let account = store.account("bench", &me).await.unwrap();
            let (client, mut events) =
                Client::start(opts.clone(), Arc::new(store.creds(account)));
            let code = loop {
                if let Some(Event::QrCode { code, .. }) = events.recv().await {
                    break code;
                }
            };
            tokio::spawn(async move { while events.recv().await.is_some() {} });
            let body = serde_json::json!({ "qr": code }).to_string();
            assert_eq!(post(&control, &format!("/phones/{me}/scan"), &body).await, 200);
            client.wait_for(|s| *s == ConnState::Connected).await;
            // Our account: its phone and us. Members: a phone and a companion each.
            assert_eq!(
                post(&control, &format!("/phones/{me}/devices"), r#"{"count":1}"#).await,
                200
            );
            let members: Vec<String> = (0..devices.div_ceil(2))
                .map(|i| format!("177{run}{i:07}"))
                .collect();
            let body = serde_json::json!({
                "subject": "bench", "creator": me, "participants": members, "addressing_mode": "lid",
            })
            .to_string();
            let (status, answer) = post_json(&control, "/groups", &body).await;
            assert_eq!(status, 200, "{answer}");
            let gid: Jid = serde_json::from_str::<serde_json::Value>(&answer).unwrap()["jid"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            // Keys uploaded and the group's notification handled before the clock starts.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let sim_pid = sim.id().map(|p| p.to_string()).unwrap_or_default();

            let (t0, c0, s0) = (Instant::now(), cpu(), cpu_of(&sim_pid));
            let first = client.send_text(&gid, "first").await.unwrap();
            let (first_wall, first_cpu) = (t0.elapsed(), cpu() - c0);
            let first_sim = cpu_of(&sim_pid).saturating_sub(s0);
            assert_eq!(first.status, MessageStatus::ServerAck);

            let n = (members.len() * 2) as f64;
            println!(
                "group_send: member_devices={} first: wall={:.1}ms cpu={:.1}ms \
                 cpu_per_device={:.0}us sim_cpu={:.1}ms",
                members.len() * 2,
                first_wall.as_secs_f64() * 1e3,
                first_cpu.as_secs_f64() * 1e3,
                first_cpu.as_secs_f64() * 1e6 / n,
                first_sim.as_secs_f64() * 1e3,
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            // Later sends, first with the members' receipts withheld (the send alone), then
            // with them (each member device's delivery receipt is stored: one per device).
            for receipts in [false, true] {
                for m in &members {
                    let body = serde_json::json!({
                        "account": m, "fault": "withhold_receipts", "on": !receipts,
                    })
                    .to_string();
                    assert_eq!(post(&control, "/faults", &body).await, 200);
                }
                let (t1, c1, s1) = (Instant::now(), cpu(), cpu_of(&sim_pid));
                for k in 0..sends {
                    let s = client.send_text(&gid, &format!("later {k}")).await.unwrap();
                    assert_eq!(s.status, MessageStatus::ServerAck);
                }
                if receipts {
                    // The last send's receipts are part of its cost.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                let wall = t1.elapsed() / sends as u32;
                let used = (cpu() - c1) / sends as u32;
                let sim_used = cpu_of(&sim_pid).saturating_sub(s1) / sends as u32;
                println!(
                    "group_send: member_devices={} later (mean of {sends}, receipts={receipts}): \
                     wall={:.2}ms cpu={:.2}ms cpu_per_device={:.1}us sim_cpu={:.2}ms",
                    members.len() * 2,
                    wall.as_secs_f64() * 1e3,
                    used.as_secs_f64() * 1e3,
                    used.as_secs_f64() * 1e6 / n,
                    sim_used.as_secs_f64() * 1e3,
                );
            }
            drop(client);
            store.close().await;
            let _ = sim.kill().await;
        }
    });
}
