import { OpenFeature } from "@openfeature/web-sdk";
import { ReviewsV2, ReviewsV3 } from "./reviews";

// TODO(editor): remove reviews-widget-v3 and ReviewsV2 once v3 is everywhere.
export function Reviews({ productId }: { productId: string }) {
  const v3 = OpenFeature.getClient().getBooleanValue("reviews-widget-v3", false);
  return v3 ? <ReviewsV3 productId={productId} /> : <ReviewsV2 productId={productId} />;
}
