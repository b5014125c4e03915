package config

import "go.yaml.in/yaml/v3"

// Which keys the user wrote. A role that sizes a default differently (dev's
// bounds for one process) must keep a value the user wrote, even when it
// equals the production default; comparing with the default cannot tell.

// IsSet reports whether key (dotted, as in the YAML file: "speed.max_sessions")
// was written in the configuration file or by a LAMBDAREC_… variable of the
// environment Load read. A key set only by code, or a flag, is not marked.
func (c *Config) IsSet(key string) bool { return c.set[key] }

// markSet records that key was written by the user.
func (c *Config) markSet(key string) {
	if c.set == nil {
		c.set = map[string]bool{}
	}
	c.set[key] = true
}

// markYAMLKeys marks every leaf key of the YAML document n (a document node
// or the root mapping), dotted from the root.
func (c *Config) markYAMLKeys(n *yaml.Node, prefix string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, ch := range n.Content {
			c.markYAMLKeys(ch, prefix)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := n.Content[i].Value
			if prefix != "" {
				key = prefix + "." + key
			}
			v := n.Content[i+1]
			if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
				continue // "key:" with no value leaves the default
			}
			if v.Kind == yaml.MappingNode {
				// A section: its keys are marked, and the section too (a
				// section of a map type, e.g. a list of named entries).
				c.markSet(key)
				c.markYAMLKeys(v, key)
			} else {
				c.markSet(key)
			}
		}
	}
}
