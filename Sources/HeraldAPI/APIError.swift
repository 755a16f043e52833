import Foundation
import HeraldCore
import Hummingbird
import NIOCore

/// An error the API answers with `{code, detail}`. The one place domain errors become HTTP errors.
struct APIError: Error, HTTPResponseError {
    let status: HTTPResponse.Status
    let code: String
    let detail: String

    init(_ status: HTTPResponse.Status, code: String, _ detail: String) {
        self.status = status
        self.code = code
        self.detail = detail
    }

    static func notFound(_ what: String = "Entity") -> APIError { .init(.notFound, code: "not_found", "\(what) not found") }
    static func conflict(_ detail: String) -> APIError { .init(.conflict, code: "conflict", detail) }
    static func badRequest(_ detail: String) -> APIError { .init(.badRequest, code: "bad_request", detail) }
    static let unauthorized = APIError(.unauthorized, code: "authentication_failed", "Invalid or missing token: send 'Authorization: Bearer <token>'")
    static let forbidden = APIError(.forbidden, code: "forbidden", "This token cannot access this resource")
    static func payloadTooLarge(_ detail: String) -> APIError { .init(.contentTooLarge, code: "payload_too_large", detail) }

    var headers: HTTPFields { [.contentType: "application/json"] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        var response = APIResponse.json(status, (try? APIJSON.encode(["code": code, "detail": detail])) ?? [])
        // A retryable answer says when to retry.
        if status == .serviceUnavailable { response.headers[.retryAfter] = code == "storage_full" ? "30" : "1" }
        return response
    }
}

/// One item of a 422 answer, in Svix's shape.
struct ValidationItem: Encodable, Sendable {
    let loc: [String]
    let msg: String
    let type: String
}

struct ValidationBody: Encodable { let detail: [ValidationItem] }

/// A 422 answer: `{detail: [{loc, msg, type}]}`.
struct ValidationFailure: Error, HTTPResponseError {
    let items: [ValidationItem]

    init(_ items: [ValidationItem]) { self.items = items }
    init(loc: [String], _ msg: String, type: String = "value_error") { self.items = [.init(loc: loc, msg: msg, type: type)] }

    var status: HTTPResponse.Status { .unprocessableContent }
    var headers: HTTPFields { [.contentType: "application/json"] }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        APIResponse.json(status, (try? APIJSON.encode(ValidationBody(detail: items))) ?? [])
    }
}

enum APIResponse {
    static func json(_ status: HTTPResponse.Status, _ bytes: [UInt8]) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func json<T: Encodable>(_ status: HTTPResponse.Status = .ok, _ value: T, rawMembers: [(String, [UInt8])] = []) throws -> Response {
        json(status, try APIJSON.encode(value, rawMembers: rawMembers))
    }

    static func empty(_ status: HTTPResponse.Status = .noContent) -> Response {
        Response(status: status)
    }
}

/// Turns every error into a JSON answer: API errors as they are, store errors by code, anything
/// else (including Hummingbird's own 404s and 413s) as `{code, detail}` — never an empty body.
struct APIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return try error.response(from: request, context: context)
        } catch let error as ValidationFailure {
            return try error.response(from: request, context: context)
        } catch let error as StoreError {
            return try Self.translate(error).response(from: request, context: context)
        } catch is NIOTooManyBytesError {
            return try APIError.payloadTooLarge("Request body is too large").response(from: request, context: context)
        } catch let error as HTTPError {
            let code: String
            switch error.status {
            case .notFound: code = "not_found"
            case .methodNotAllowed: code = "method_not_allowed"
            case .contentTooLarge: code = "payload_too_large"
            case .badRequest: code = "bad_request"
            default: code = "http_error"
            }
            let detail = error.body ?? error.status.reasonPhrase
            return try APIError(error.status, code: code, detail).response(from: request, context: context)
        } catch {
            context.logger.error("unhandled error", metadata: ["herald.error.type": "\(type(of: error))"])
            return try APIError(.internalServerError, code: "server_error", "Internal server error").response(from: request, context: context)
        }
    }

    static func translate(_ error: StoreError) -> APIError {
        switch error.code {
        case .notFound: return .init(.notFound, code: "not_found", error.message)
        case .conflict: return .conflict(error.message)
        case .unavailable: return .init(.serviceUnavailable, code: "unavailable", "The database is unavailable, try again")
        case .stale: return .conflict(error.message)
        case .storageFull: return .init(.serviceUnavailable, code: "storage_full", "The database cannot write: \(error.message). Nothing stored was lost; try again later")
        default: return .init(.internalServerError, code: "server_error", "Internal server error")
        }
    }
}
