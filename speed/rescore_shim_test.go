package speed

// benchScored notes that s was scored at clock c, as the layer does.
func benchScored(p *processor, s *session, c uint64) { p.setScored(s, c) }
