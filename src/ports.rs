//! Binding listeners with errors that say what to do: a port in use names the port and the
//! process that holds it, when /proc tells.

use std::net::SocketAddr;

use crate::Fatal;

/// Binds a TCP listener for `what` (e.g. "admin listener", setting "PROXPANEL_ADMIN_LISTEN").
pub async fn bind_tcp(
    addr: SocketAddr,
    what: &str,
    setting: &str,
) -> Result<tokio::net::TcpListener, Fatal> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| bind_error(e, addr, "tcp", what, setting))
}

/// Binds a UDP socket for `what`.
pub async fn bind_udp(
    addr: SocketAddr,
    what: &str,
    setting: &str,
) -> Result<tokio::net::UdpSocket, Fatal> {
    tokio::net::UdpSocket::bind(addr)
        .await
        .map_err(|e| bind_error(e, addr, "udp", what, setting))
}

fn bind_error(
    e: std::io::Error,
    addr: SocketAddr,
    proto: &str,
    what: &str,
    setting: &str,
) -> Fatal {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            let culprit = holder(addr.port(), proto)
                .map(|(pid, name)| format!(" by {name} (pid {pid})"))
                .unwrap_or_default();
            Fatal::failure(format!(
                "cannot start the {what}: {proto} port {} ({addr}) is already in use{culprit} — probably another `proxpanel serve` or a service on that port; stop it, or set {setting} to another address or `off`",
                addr.port()
            ))
        }
        std::io::ErrorKind::PermissionDenied => Fatal::failure(format!(
            "cannot start the {what} on {addr}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); set {setting} to a higher port"
        )),
        std::io::ErrorKind::AddrNotAvailable => Fatal::failure(format!(
            "cannot start the {what}: {addr} is not an address of this machine; fix {setting}"
        )),
        _ => Fatal::failure(format!("cannot start the {what} on {addr}: {e}")),
    }
}

/// The process (pid, command name) with a socket bound to `port`, from /proc (Linux only).
pub fn holder(port: u16, proto: &str) -> Option<(u32, String)> {
    let mut inodes = Vec::new();
    for table in [format!("/proc/net/{proto}"), format!("/proc/net/{proto}6")] {
        let Ok(text) = std::fs::read_to_string(&table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            // TCP listeners are state 0A; UDP bound sockets are 07.
            let listening = if proto == "tcp" {
                *state == "0A"
            } else {
                *state == "07"
            };
            let p = local
                .rsplit(':')
                .next()
                .and_then(|h| u16::from_str_radix(h, 16).ok());
            if listening && p == Some(port) && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| target.to_str() == Some(i))
            {
                let name = std::fs::read_to_string(entry.path().join("comm"))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_else(|_| "?".into());
                return Some((pid, name));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn port_in_use_names_port_and_holder() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let err = super::bind_tcp(addr, "admin listener", "PROXPANEL_ADMIN_LISTEN")
            .await
            .unwrap_err();
        assert!(
            err.message.contains(&format!("tcp port {}", addr.port())),
            "{}",
            err.message
        );
        assert!(err.message.contains("PROXPANEL_ADMIN_LISTEN"));
        // The holder is this very test process.
        assert!(
            err.message.contains(&format!("pid {}", std::process::id())),
            "{}",
            err.message
        );
        let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ua = u.local_addr().unwrap();
        let err = super::bind_udp(ua, "RADIUS auth listener", "PROXPANEL_RADIUS_AUTH_LISTEN")
            .await
            .unwrap_err();
        assert!(
            err.message.contains(&format!("udp port {}", ua.port())),
            "{}",
            err.message
        );
    }
}
