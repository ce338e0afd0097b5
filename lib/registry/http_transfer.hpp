// HttpTransfer: one HTTP request and its streamed response, pulled by the
// reader: wait_headers() then read() the body. curl runs inside these calls
// (multi interface), so there is no extra thread; a full buffer pauses the
// transfer. Owned by one thread at a time; returns its handles to the
// HttpClient's pool when destroyed.
#pragma once

#include <curl/curl.h>

#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "registry/http_client.hpp"

namespace layer::registry {

// Response header fields, names lowercased, in the order received.
class HttpHeaders {
 public:
  void add(std::string name, std::string value);
  void clear() { fields_.clear(); }
  std::optional<std::string> get(std::string_view name) const;  // the last one
  std::vector<std::string> all(std::string_view name) const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

class HttpTransfer {
 public:
  HttpTransfer(HttpClient& client, std::unique_ptr<CurlHandles> h, const HttpRequest& req);
  ~HttpTransfer();
  HttpTransfer(const HttpTransfer&) = delete;
  HttpTransfer& operator=(const HttpTransfer&) = delete;

  // Runs the transfer until the final response's headers are in.
  // Throws TransportError if it fails before that.
  void wait_headers();
  long status() const { return status_; }
  const HttpHeaders& headers() const { return headers_; }
  const std::string& url() const { return url_; }
  // Absolute target of a 3xx response's Location, or empty.
  std::string redirect_url() const;

  // Up to n body bytes; 0 only at the end. Throws TransportError if the
  // transfer fails (a cut connection included).
  size_t read(void* buf, size_t n);
  // The whole body; throws Error if it is longer than `max`.
  std::string read_all(size_t max);

 private:
  static size_t on_header(char* data, size_t size, size_t n, void* self);
  static size_t on_body(char* data, size_t size, size_t n, void* self);
  static size_t on_read(char* data, size_t size, size_t n, void* self);
  void drive();  // one curl_multi_perform, then a poll if nothing happened
  void check_done();
  size_t available() const { return buf_.size() - pos_; }
  [[noreturn]] void throw_failure() const;

  HttpClient& client_;
  std::unique_ptr<CurlHandles> h_;
  std::string url_;
  struct SlistFree {
    void operator()(curl_slist* l) const { curl_slist_free_all(l); }
  };
  std::unique_ptr<curl_slist, SlistFree> header_list_;
  char errbuf_[CURL_ERROR_SIZE] = {};

  HttpHeaders headers_;
  long status_ = 0;
  bool headers_done_ = false;
  bool done_ = false;
  bool paused_ = false;
  CURLcode result_ = CURLE_OK;
  std::vector<char> buf_;             // received body bytes; [pos_, size) unread
  std::shared_ptr<HttpBody> upload_;  // the request body, or null
  std::exception_ptr upload_error_;   // thrown by upload_ inside curl
  size_t pos_ = 0;
};

}  // namespace layer::registry
