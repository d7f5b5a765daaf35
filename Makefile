.PHONY: build test demo bench
build:
	go build -o bin/jitfs ./cmd/jitfs
test:
	bash scripts/test.sh
demo:
	go run ./cmd/jitfs demo
bench:
	go test -run '^$$' -bench . -benchtime 1x -timeout 60m ./...
