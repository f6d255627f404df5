import { OpenFeature } from "@openfeature/web-sdk";
import { AddressField, BitcoinOption, CardForm, CardFormV2, PromoBanner } from "./components";

const flags = OpenFeature.getClient();

export function Checkout() {
  const bitcoin = flags.getBooleanValue("allow-bitcoin-at-checkout", false);
  const newForm = flags.getBooleanValue("new-payment-form", false);
  const onePage = flags.getBooleanValue("one-page-checkout", false);
  const banner = flags.getObjectValue("promo-banner", {});
  const autocomplete = flags.getBooleanValue("address-autocomplete", false);
  return (
    <main className={onePage ? "checkout one-page" : "checkout"}>
      <PromoBanner content={banner} />
      <AddressField suggest={autocomplete} />
      {newForm ? <CardFormV2 /> : <CardForm />}
      {bitcoin && <BitcoinOption />}
    </main>
  );
}
