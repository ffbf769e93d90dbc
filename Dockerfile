# Multi-stage build: a static binary in a distroless image that runs as nobody.
#   docker build -t slotproxy .
#   docker run --rm -p 7777:7777 -p 9777:9777 slotproxy -listen 0.0.0.0:7777 -metrics 0.0.0.0:9777 -seeds host:7000
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/slotproxy .

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/slotproxy /usr/local/bin/slotproxy
COPY proxy.yaml /etc/slotproxy/proxy.yaml
EXPOSE 7777 9777 7946/tcp 7946/udp
ENTRYPOINT ["/usr/local/bin/slotproxy", "-config", "/etc/slotproxy/proxy.yaml"]
