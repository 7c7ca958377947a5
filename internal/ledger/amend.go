package ledger

// Amend records a later outcome of a delivery the ledger has already: a
// copy the provider accepted and then bounced to its SRS sender
// (internal/srs) becomes Bounced with the provider's reply. d replaces
// the delivery of d.Index of message id on node as a final state
// replaces any (dlvUpsert); empty fields keep what the ledger has.
func (r *Recorder) Amend(node, id string, d Delivery) {
	r.send(event{at: d.At, row: &d, key: msgKey{node, id}}, true)
}
