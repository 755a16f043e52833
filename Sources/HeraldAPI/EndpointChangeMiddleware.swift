import HeraldCore
import Hummingbird

/// Tells this node's dispatcher that endpoints may have changed, after every successful change to
/// an application or an endpoint (update, delete, secret rotation, headers…), so that the next
/// delivery uses the change at once instead of the dispatcher's copy from up to a second ago.
/// Reads pass through untouched; a failed request changed nothing.
struct EndpointChangeMiddleware: RouterMiddleware {
    typealias Context = APIRequestContext
    let handOver: (any DeliveryHandOver)?
    /// Publishes' copies of applications, forgotten on any change too.
    var applications: ApplicationCache?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let response = try await next(request, context)
        if request.method != .get, request.method != .head, response.status.code < 400 {
            handOver?.endpointsChanged()
            applications?.removeAll()
        }
        return response
    }
}
