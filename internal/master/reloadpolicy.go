package master

import (
	"github.com/mailtee/mailtee/internal/maps"
	"github.com/mailtee/mailtee/internal/smtpd"
)

// reloadedPolicy is the relay control and recipient checks of running
// listener svc after a reload: main.cf's, with its service's overrides
// in master.cf as it is now. A listener whose service is gone from
// master.cf (removed, or renamed to another address) keeps listening
// until the next restart, and keeps its own policy meanwhile (nil: no
// change), with a warning: main.cf's would drop the restrictions of its
// -o overrides (a submission port's, a re-injection port's) while it
// still accepts mail. So does one whose override tables cannot be
// opened now.
func (s *Server) reloadedPolicy(svc *smtpService, now []*smtpService, rt *runtime, opened map[string]maps.Table) *smtpd.Policy {
	for _, n := range now {
		if n.name != svc.name {
			continue
		}
		svc.overridden = n.overridden // for a later reload that finds it gone
		if !n.overridden {
			return rt.policy
		}
		t, err := openTables(n.cfg, opened)
		if err != nil {
			s.log.Printf("master", "warning: reload: master.cf service %s: %v; the listener keeps its previous relay control and recipient checks", svc.name, err)
			return nil
		}
		return policyFor(n.cfg, t)
	}
	if !svc.overridden {
		return rt.policy
	}
	s.log.Printf("master", "warning: reload: master.cf service %s is gone, but its listener runs until the next restart (mailtee serve opens listeners at its start); it keeps the relay control and recipient checks of its -o overrides meanwhile", svc.name)
	return nil
}
