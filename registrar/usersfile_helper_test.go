package registrar_test

import (
	"github.com/pinhole-sip/pinhole/internal/usersfile"
	"github.com/pinhole-sip/pinhole/registrar/auth"
)

// loadUsersFile reads a users file the way the binary does (registrar/auth
// parses bytes only).
func loadUsersFile(path, realm string, allowPlaintext bool) (*auth.Users, error) {
	f, err := usersfile.Load(path, realm, allowPlaintext)
	if err != nil {
		return nil, err
	}
	return f.Users(), nil
}
