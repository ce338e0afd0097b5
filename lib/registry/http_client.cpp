#include "registry/http_client.hpp"

#include <cassert>
#include <cerrno>
#include <cstring>

#include "registry/http_transfer.hpp"

namespace layer::registry {

namespace {

constexpr size_t kMaxIdleHandles = 16;

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw Error("curl_global_init failed");
  });
}

}  // namespace

TransportError::Kind TransportError::classify(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
      return Kind::Resolve;
    case CURLE_COULDNT_CONNECT:
      return Kind::Connect;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
      return Kind::Tls;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_READ_ERROR:
      return Kind::Transient;
    default:
      return Kind::Other;
  }
}

std::string transport_message(const TransportError& e, const std::string& host) {
  switch (e.kind()) {
    case TransportError::Kind::Resolve:
      return "unknown host '" + host + "' (name lookup failed)";
    case TransportError::Kind::Connect:
      if (e.os_errno() == ECONNREFUSED) return "connection refused by " + host;
      if (e.os_errno() != 0)
        return "cannot connect to " + host + ": " + std::strerror(e.os_errno());
      return "cannot connect to " + host + " (" + e.line() + ")";
    case TransportError::Kind::Tls:
      return "TLS failure talking to " + host + ": " + e.line() +
             " (trust a private CA with --cert-dir DIR holding its .crt, or skip "
             "verification with --tls-verify=false)";
    case TransportError::Kind::Transient:
      return "connection to " + host + " failed: " + e.line();
    case TransportError::Kind::Slow:
      return host + " " + e.line();
    case TransportError::Kind::Other:
      break;
  }
  return "talking to " + host + ": " + e.line();
}

CurlHandles::~CurlHandles() {
  if (multi && easy) curl_multi_remove_handle(multi, easy);
  if (easy) curl_easy_cleanup(easy);
  if (multi) curl_multi_cleanup(multi);
}

HttpClient::HttpClient(TlsConfig tls, SpeedFloor floor) : tls_(std::move(tls)), floor_(floor) {
  global_init();
  share_ = curl_share_init();
  if (!share_) throw Error("curl_share_init failed");
  curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &HttpClient::lock_cb);
  curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &HttpClient::unlock_cb);
  curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
  // Connections are not shared here (curl documents that as unsafe across
  // threads); each pooled multi handle keeps its own connection cache.
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

HttpClient::~HttpClient() {
  idle_.clear();  // the easy handles must go before the share
  curl_share_cleanup(share_);
}

void HttpClient::lock_cb(CURL*, curl_lock_data data, curl_lock_access, void* self) {
  static_cast<HttpClient*>(self)->share_mu_[data].lock();
}

void HttpClient::unlock_cb(CURL*, curl_lock_data data, void* self) {
  static_cast<HttpClient*>(self)->share_mu_[data].unlock();
}

std::unique_ptr<CurlHandles> HttpClient::lease() {
  {
    std::lock_guard lock(pool_mu_);
    if (!idle_.empty()) {
      auto h = std::move(idle_.back());
      idle_.pop_back();
      curl_easy_reset(h->easy);
      return h;
    }
  }
  auto h = std::make_unique<CurlHandles>();
  h->multi = curl_multi_init();
  h->easy = curl_easy_init();
  if (!h->multi || !h->easy) throw Error("curl handle allocation failed");
  return h;
}

void HttpClient::give_back(std::unique_ptr<CurlHandles> h) {
  std::lock_guard lock(pool_mu_);
  if (idle_.size() < kMaxIdleHandles) idle_.push_back(std::move(h));
}

std::unique_ptr<HttpTransfer> HttpClient::start(const HttpRequest& req) {
  assert(req.method == "GET" || req.method == "HEAD" || req.method == "PUT" ||
         req.method == "POST" || req.method == "PATCH");
  return std::make_unique<HttpTransfer>(*this, lease(), req);
}

}  // namespace layer::registry
