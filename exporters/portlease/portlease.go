// Package portlease reserves a free TCP port on 127.0.0.1 for a test server that must keep
// the same address across restarts (a carbon that is stopped and started again, a proxy
// that goes down and up): while the server is down, the lease keeps anyone else from
// binding the port.
package portlease

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Hold binds a socket with SO_REUSEPORT and SO_REUSEADDR to a free port on 127.0.0.1,
// without listening, and returns it and the port. A server that also sets SO_REUSEPORT
// (carbon) binds the same port beside it; so does one that sets SO_REUSEADDR (every Go
// server, influxd among them, sets it on its listeners), because Linux lets two sockets
// with SO_REUSEADDR share a port as long as the one bound first is not listening. Close
// the fd with unix.Close when the port is no longer needed.
func Hold() (fd, port int, err error) {
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("holding a port: %w", err)
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	if err == nil {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	}
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	}
	var sa unix.Sockaddr
	if err == nil {
		sa, err = unix.Getsockname(fd)
	}
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("holding a port on 127.0.0.1: %w", err)
	}
	return fd, sa.(*unix.SockaddrInet4).Port, nil
}
