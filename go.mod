module github.com/picket-agent/picket

go 1.26.8

require (
	github.com/alecthomas/kong v1.17.0 // indirect
	github.com/influxdata/line-protocol/v2 v2.2.1 // indirect
	github.com/prometheus/procfs v0.23.0 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
