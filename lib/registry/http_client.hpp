// HttpClient: libcurl for the registry client. Owns a CURLSH (DNS cache and
// TLS sessions, shared under mutexes) and a pool of (multi, easy) handle
// pairs whose connection caches give keep-alive reuse: a transfer leases one
// pair, and gives it back, connections included, when it ends. Thread-safe;
// each HttpTransfer it starts belongs to one thread at a time.
#pragma once

#include <curl/curl.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "registry/http_body.hpp"
#include "util/error.hpp"

namespace layer::registry {

struct TlsConfig {
  bool verify = true;       // --tls-verify=false: no peer or host name check
  std::string ca_pem;       // PEM CAs trusted in addition to the system store
  std::string client_cert;  // PEM file paths for a client certificate, or empty
  std::string client_key;
};

struct HttpRequest {
  std::string method = "GET";        // GET, HEAD, or with a body: PUT, POST, PATCH
  std::string url;                   // http:// or https:// only
  std::vector<std::string> headers;  // "Name: value"
  std::string authorization;         // Authorization header value; empty: none
  long long range_from = -1;         // >= 0: "Range: bytes=N-"
  long long range_to = -1;           // >= range_from: "Range: bytes=N-M" (M inclusive)
  std::shared_ptr<HttpBody> body;    // PUT/POST/PATCH (null: empty); rewound per attempt
};

// A failure below HTTP (DNS, connect, TLS, a cut connection), from curl.
class TransportError : public Error {
 public:
  enum class Kind { Resolve, Connect, Tls, Transient, Other };
  TransportError(Kind kind, int curl_code, const std::string& message, int os_errno = 0)
      : Error(message), kind_(kind), curl_code_(curl_code), os_errno_(os_errno) {}
  Kind kind() const { return kind_; }
  int curl_code() const { return curl_code_; }
  int os_errno() const { return os_errno_; }  // the socket error, when curl knows it
  static Kind classify(CURLcode c);

 private:
  Kind kind_;
  int curl_code_;
  int os_errno_;
};

// A user-facing message for `e` while talking to `host` ("unknown host",
// "connection refused", "TLS failure" with what to do about it).
std::string transport_message(const TransportError& e, const std::string& host);

class HttpTransfer;

// One leased (multi, easy) pair: the multi holds the connection cache.
struct CurlHandles {
  CURLM* multi = nullptr;
  CURL* easy = nullptr;
  ~CurlHandles();
};

class HttpClient {
 public:
  explicit HttpClient(TlsConfig tls);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a request; the transfer runs as it is read. Throws Error only for
  // a curl setup failure; network failures surface from the transfer.
  std::unique_ptr<HttpTransfer> start(const HttpRequest& req);

  const TlsConfig& tls() const { return tls_; }

 private:
  friend class HttpTransfer;
  std::unique_ptr<CurlHandles> lease();
  void give_back(std::unique_ptr<CurlHandles> h);
  static void lock_cb(CURL*, curl_lock_data data, curl_lock_access, void* self);
  static void unlock_cb(CURL*, curl_lock_data data, void* self);

  TlsConfig tls_;
  CURLSH* share_ = nullptr;
  std::mutex share_mu_[CURL_LOCK_DATA_LAST];  // one per curl_lock_data; curl orders them
  std::mutex pool_mu_;
  std::vector<std::unique_ptr<CurlHandles>> idle_;  // guarded by pool_mu_
};

}  // namespace layer::registry
