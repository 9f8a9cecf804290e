module stackless-benches-go

go 1.19
