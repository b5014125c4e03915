package kafka

// Password is password, for the external tests.
var Password = password
