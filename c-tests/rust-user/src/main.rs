//! What a Rust user writes: borrow the stream (`&stream`), keep the socket.
//! Prints one "ok - ..." / "not ok - ..." line per check.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;

use heartbeat::keepalive::{self, SlowReaders};
use heartbeat::status::{self, Peer};

fn main() -> ExitCode {
    let mut failed = 0;
    let mut check = |ok: bool, what: &str| {
        println!("{} - {what}", if ok { "ok" } else { "not ok" });
        failed += usize::from(!ok);
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut stream = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut server, _) = listener.accept().expect("accept");

    check(
        keepalive::enable(&stream, 10, 5, 3).is_ok(),
        "enable(&stream, 10, 5, 3)",
    );
    let cfg = keepalive::within(&stream, 10_000, SlowReaders::TimeOut);
    check(
        cfg.is_ok_and(|c| keepalive::get(&stream) == Ok(c)),
        "within(&stream, 10 s) is what get() reads back",
    );
    check(
        status::status(&stream).map(|s| s.peer) == Ok(Peer::Alive),
        "status(&stream) is Alive",
    );
    // The stream is still ours, open and working after every call.
    let mut buf = [0u8; 4];
    let echoed = stream.write_all(b"ping").is_ok()
        && server.read_exact(&mut buf).is_ok()
        && server.write_all(&buf).is_ok()
        && stream.read_exact(&mut buf).is_ok();
    check(
        echoed && &buf == b"ping",
        "the socket is still open and usable",
    );
    check(
        keepalive::config_within(1000, SlowReaders::TimeOut) == Err(heartbeat::Error::Within),
        "an impossible deadline is refused",
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
