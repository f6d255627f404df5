import { OpenFeature } from "@openfeature/web-sdk";
import { Hero, HeroVideo, MaintenanceBanner, Recommendations } from "./components";

const flags = OpenFeature.getClient();

export function Home() {
  const dark = flags.getBooleanValue("dark-mode", false);
  const videoHero = flags.getBooleanValue("new-homepage-hero", false);
  return (
    <div className={dark ? "theme-dark" : "theme-light"}>
      {flags.getBooleanValue("maintenance-banner", false) && <MaintenanceBanner />}
      {videoHero ? <HeroVideo /> : <Hero />}
      {flags.getBooleanValue("product-recommendations", true) && <Recommendations />}
    </div>
  );
}
