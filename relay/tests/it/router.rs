//! A synthetic router: boringtun `Tunn` as the WireGuard client on a loopback UDP socket, an
//! echo server on TCP 8728 (smoltcp) and a UDP responder on 3799 ("ack:" + request).

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use relay::tcp::{QueueDevice, interface, socket};
use relay::vnet::{TunnelNet, parse_udp, udp_packet};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

enum Cmd {
    Radius(u16, Vec<u8>, oneshot::Sender<Vec<u8>>),
}

/// A running router task.
pub struct Router {
    cmds: mpsc::Sender<Cmd>,
}

impl Router {
    pub async fn start(
        secret: StaticSecret,
        relay_key: [u8; 32],
        relay_addr: SocketAddr,
        tunnel: &str,
    ) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let net = TunnelNet::parse(tunnel).unwrap();
        let tunn = Tunn::new(
            secret,
            PublicKey::from(relay_key),
            None,
            Some(25),
            rand::random::<u32>() >> 8,
            None,
        );
        let (cmds, rx) = mpsc::channel(16);
        tokio::spawn(run(sock, tunn, net, relay_addr, rx));
        Self { cmds }
    }

    /// Sends a RADIUS-like datagram to the relay's tunnel address and waits for the answer.
    pub async fn radius(&self, port: u16, payload: &[u8]) -> Vec<u8> {
        let (tx, rx) = oneshot::channel();
        self.cmds
            .send(Cmd::Radius(port, payload.to_vec(), tx))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .expect("no RADIUS answer through the tunnel")
            .unwrap()
    }
}

struct State {
    sock: UdpSocket,
    tunn: Tunn,
    net: TunnelNet,
    relay: SocketAddr,
    iface: Interface,
    dev: QueueDevice,
    sockets: SocketSet<'static>,
    listener: SocketHandle,
    waiting: Vec<(u16, oneshot::Sender<Vec<u8>>)>,
    buf: Vec<u8>,
}

impl State {
    async fn send_ip(&mut self, packet: &[u8]) {
        if let TunnResult::WriteToNetwork(d) = self.tunn.encapsulate(packet, &mut self.buf) {
            self.sock.send_to(d, self.relay).await.unwrap();
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::now()
    }

    async fn pump_tcp(&mut self) {
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        let s = self.sockets.get_mut::<tcp::Socket>(self.listener);
        if !s.is_open() {
            s.listen(8728).unwrap();
        }
        if s.can_recv() && s.can_send() {
            let mut chunk = vec![0u8; s.send_capacity() - s.send_queue()];
            let n = s.recv_slice(&mut chunk).unwrap();
            s.send_slice(&chunk[..n]).unwrap();
        }
        if s.state() == tcp::State::CloseWait {
            s.close();
        }
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        let out: Vec<Vec<u8>> = self.dev.tx.drain(..).collect();
        for p in out {
            self.send_ip(&p).await;
        }
    }

    async fn on_inner(&mut self, packet: Vec<u8>) {
        if packet.get(9) == Some(&6) {
            self.dev.rx.push_back(packet);
            return;
        }
        let Some((src, dst, payload)) = parse_udp(&packet) else {
            return;
        };
        assert_eq!(*src.ip(), self.net.relay);
        assert_eq!(*dst.ip(), self.net.peer);
        if dst.port() == 3799 {
            let mut reply = b"ack:".to_vec();
            reply.extend_from_slice(payload);
            let p = udp_packet(dst, src, &reply);
            self.send_ip(&p).await;
            return;
        }
        if let Some(i) = self.waiting.iter().position(|(p, _)| *p == dst.port()) {
            let (_, tx) = self.waiting.swap_remove(i);
            let _ = tx.send(payload.to_vec());
        }
    }
}

async fn run(
    sock: UdpSocket,
    tunn: Tunn,
    net: TunnelNet,
    relay: SocketAddr,
    mut cmds: mpsc::Receiver<Cmd>,
) {
    let (iface, dev) = interface(
        net.peer,
        net.prefix,
        rand::random(),
        smoltcp::time::Instant::now(),
    );
    let mut sockets = SocketSet::new(Vec::new());
    let mut listener = socket();
    listener.listen(8728).unwrap();
    let listener = sockets.add(listener);
    let mut st = State {
        sock,
        tunn,
        net,
        relay,
        iface,
        dev,
        sockets,
        listener,
        waiting: Vec::new(),
        buf: vec![0u8; 65_600],
    };
    let mut next_port = 40000u16;
    let mut rx = vec![0u8; 65_600];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            cmd = cmds.recv() => {
                let Some(Cmd::Radius(port, payload, tx)) = cmd else { return };
                next_port += 1;
                st.waiting.push((next_port, tx));
                let p = udp_packet(
                    SocketAddrV4::new(st.net.peer, next_port),
                    SocketAddrV4::new(st.net.relay, port),
                    &payload,
                );
                st.send_ip(&p).await;
            }
            r = st.sock.recv_from(&mut rx) => {
                let Ok((n, _)) = r else { continue };
                let mut inner = Vec::new();
                match st.tunn.decapsulate(None, &rx[..n], &mut st.buf) {
                    TunnResult::WriteToNetwork(d) => {
                        st.sock.send_to(d, relay).await.unwrap();
                        while let TunnResult::WriteToNetwork(d) = st.tunn.decapsulate(None, &[], &mut st.buf) {
                            st.sock.send_to(d, relay).await.unwrap();
                        }
                    }
                    TunnResult::WriteToTunnelV4(p, src) => {
                        assert_eq!(src, st.net.relay);
                        inner.push(p.to_vec());
                    }
                    _ => {}
                }
                for p in inner {
                    st.on_inner(p).await;
                }
                st.pump_tcp().await;
            }
            _ = tick.tick() => {
                if let TunnResult::WriteToNetwork(d) = st.tunn.update_timers(&mut st.buf) {
                    st.sock.send_to(d, relay).await.unwrap();
                }
                st.pump_tcp().await;
            }
        }
    }
}
