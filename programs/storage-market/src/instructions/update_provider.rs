use anchor_lang::prelude::*;

use crate::errors::MarketError;
use crate::events::ProviderUpdated;
use crate::provider_signer::*;
use crate::state::Provider;

/// Fields left `None` keep their value.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateProviderArgs {
    pub operator: Option<Pubkey>,
    pub endpoint: Option<String>,
    pub capacity_bytes: Option<u64>,
    pub price_per_mib_epoch: Option<u64>,
}

#[event_cpi]
#[derive(Accounts)]
pub struct UpdateProvider<'info> {
    pub owner: ProviderSigner<'info>,
}

impl UpdateProvider<'_> {
    pub fn validate(&self, args: &UpdateProviderArgs) -> Result<()> {
        if let Some(endpoint) = &args.endpoint {
            Provider::validate_endpoint(endpoint)?;
        }
        if let Some(capacity) = args.capacity_bytes {
            require!(
                capacity > 0 && capacity >= self.owner.provider.used_bytes,
                MarketError::InvalidCapacity
            );
        }
        Ok(())
    }
}

#[access_control(ctx.accounts.validate(&args))]
pub fn handler(ctx: Context<UpdateProvider>, args: UpdateProviderArgs) -> Result<()> {
    let provider = &mut ctx.accounts.owner.provider;
    if let Some(operator) = args.operator {
        provider.operator = operator;
    }
    if let Some(endpoint) = args.endpoint {
        provider.endpoint = endpoint;
    }
    if let Some(capacity) = args.capacity_bytes {
        provider.capacity_bytes = capacity;
    }
    if let Some(price) = args.price_per_mib_epoch {
        provider.price_per_mib_epoch = price;
    }
    provider.invariant()?;
    emit_cpi!(ProviderUpdated {
        provider: provider.key(),
        operator: provider.operator,
        endpoint: provider.endpoint.clone(),
        capacity_bytes: provider.capacity_bytes,
        price_per_mib_epoch: provider.price_per_mib_epoch,
    });
    Ok(())
}
