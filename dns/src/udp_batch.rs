//! Batched UDP I/O for the query loop: `recvmmsg` takes up to [`BATCH`] queries per system call
//! and `sendmmsg` returns their answers in one, as NSD does. Under load most of an answer's cost
//! is the two system calls of a one-datagram loop; batching divides it by the batch size. With
//! a single query waiting, a batch is that one query, so latency does not change.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams per system call.
pub const BATCH: usize = 32;

/// Largest query we read (EDNS payloads of clients are ≤ 4096; longer ones are truncated and
/// refused as malformed by the parser).
const QUERY_MAX: usize = 4096;

/// Receive buffers and what arrived in them.
pub struct RecvBatch {
    bufs: Vec<Vec<u8>>,
    got: Vec<(usize, Option<SocketAddr>)>,
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: (0..BATCH).map(|_| vec![0u8; QUERY_MAX]).collect(),
            got: Vec::with_capacity(BATCH),
        }
    }
}

impl RecvBatch {
    /// Waits for at least one datagram and takes every one that is queued, up to [`BATCH`].
    ///
    /// # Errors
    /// Socket errors other than "would block".
    pub async fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        socket
            .async_io(Interest::READABLE, || self.recv_now(socket))
            .await
    }

    fn recv_now(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(b.as_mut_slice())])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        self.got.clear();
        for r in results {
            self.got
                .push((r.bytes.min(QUERY_MAX), r.address.as_ref().and_then(to_std)));
        }
        Ok(self.got.len())
    }

    /// The `i`-th datagram of the last [`RecvBatch::recv`] and its sender.
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>)> {
        let (n, src) = *self.got.get(i)?;
        Some((self.bufs.get(i)?.get(..n)?, src))
    }
}

/// Answers to send and where.
#[derive(Default)]
pub struct SendBatch {
    outs: Vec<Vec<u8>>,
    dests: Vec<Option<SockaddrStorage>>,
    len: usize,
}

impl SendBatch {
    /// An empty answer buffer to fill; it is sent only if [`SendBatch::commit`] follows.
    pub fn slot(&mut self) -> &mut Vec<u8> {
        if self.outs.len() <= self.len {
            self.outs.push(Vec::with_capacity(1232));
            self.dests.push(None);
        }
        let out = &mut self.outs[self.len];
        out.clear();
        out
    }

    /// Keeps the buffer last returned by [`SendBatch::slot`], to go to `dest`.
    pub fn commit(&mut self, dest: SocketAddr) {
        if self.len < self.outs.len() {
            self.dests[self.len] = Some(SockaddrStorage::from(dest));
            self.len += 1;
        }
    }

    /// Sends everything kept and empties the batch. A datagram the kernel refuses (say, an
    /// unreachable client) is dropped and counted in the result; the rest still go.
    pub async fn flush(&mut self, socket: &UdpSocket) -> usize {
        let mut sent = 0;
        let mut failed = 0;
        while sent < self.len {
            let r = socket
                .async_io(Interest::WRITABLE, || self.send_now(socket, sent))
                .await;
            match r {
                Ok(0) | Err(_) => {
                    // The datagram at `sent` failed: skip it, go on with the rest.
                    failed += 1;
                    sent += 1;
                }
                Ok(n) => sent += n,
            }
        }
        self.len = 0;
        failed
    }

    fn send_now(&self, socket: &UdpSocket, from: usize) -> io::Result<usize> {
        let (outs, dests) = (&self.outs[from..self.len], &self.dests[from..self.len]);
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(outs.len(), None);
        let slices: Vec<[IoSlice<'_>; 1]> = outs.iter().map(|o| [IoSlice::new(o)]).collect();
        let cmsgs: [ControlMessage<'_>; 0] = [];
        let results = sendmmsg(
            socket.as_raw_fd(),
            &mut headers,
            &slices,
            dests,
            cmsgs,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)?;
        Ok(results.count())
    }
}

fn to_std(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from((v4.ip(), v4.port())));
    }
    a.as_sockaddr_in6()
        .map(|v6| SocketAddr::from((v6.ip(), v6.port())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_arrives_in_one_batch_and_answers_reach_each_sender() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let clients: Vec<UdpSocket> = clients(5).await;
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&[u8::try_from(i).unwrap(); 3], addr)
                .await
                .unwrap();
        }
        // All five are queued before the first receive.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut rb = RecvBatch::default();
        let n = rb.recv(&server).await.unwrap();
        assert_eq!(n, 5);
        let mut sb = SendBatch::default();
        for i in 0..n {
            let (q, src) = rb.get(i).unwrap();
            assert_eq!(q.len(), 3);
            let out = sb.slot();
            out.extend_from_slice(b"re:");
            out.push(q[0]);
            sb.commit(src.unwrap());
        }
        // An answer that is prepared but not committed is not sent.
        sb.slot().extend_from_slice(b"never");
        assert_eq!(sb.flush(&server).await, 0);
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 16];
            let (m, from) = c.recv_from(&mut buf).await.unwrap();
            assert_eq!(from, addr);
            assert_eq!(&buf[..m], &[b'r', b'e', b':', u8::try_from(i).unwrap()]);
        }
    }

    #[tokio::test]
    async fn ipv6_senders_keep_their_address() {
        let Ok(server) = UdpSocket::bind("[::1]:0").await else {
            return; // no IPv6 loopback on this machine
        };
        let c = UdpSocket::bind("[::1]:0").await.unwrap();
        c.send_to(b"q", server.local_addr().unwrap()).await.unwrap();
        let mut rb = RecvBatch::default();
        assert_eq!(rb.recv(&server).await.unwrap(), 1);
        assert_eq!(rb.get(0).unwrap().1, Some(c.local_addr().unwrap()));
    }

    async fn clients(n: usize) -> Vec<UdpSocket> {
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        v
    }
}
