package e2e

import "testing"

// The switch under load in one box (copy_transport, issue 18): the
// copies and the forwards leave straight for "Google", to the very
// addresses delivered here (user1 -> user1@students.iiit.ac.in), and
// "Google" is down until after the switch. A copy to the mailbox's own
// address is no duplicate of the mailbox delivery, and a forward no
// local delivery.
func TestPhaseOneBoxDualToForwardUnderLoad(t *testing.T) {
	t.Run("mailbox_bcc_maps", func(t *testing.T) {
		phaseSwitchUnderLoad(t, loadCase{bcc: "mailbox_bcc_maps", from: "dual", to: "forward", oneBox: true})
	})
	t.Run("recipient_bcc_maps", func(t *testing.T) {
		phaseSwitchUnderLoad(t, loadCase{bcc: "recipient_bcc_maps", from: "dual", to: "forward", restart: true, oneBox: true})
	})
}
